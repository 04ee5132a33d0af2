"""The analytics benchmark (issue 4): funnels, retention and trends on 10 million events."""
