"""Analytics over the lake: the query engine, transformations' marts, and analyses."""
