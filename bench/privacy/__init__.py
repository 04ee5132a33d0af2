"""The privacy benchmark (issue 6): erasure and export times on a large data set."""
