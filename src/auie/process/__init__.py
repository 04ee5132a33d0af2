"""The processor: event log → tracking plan → enrichment → identity → profiles → lake."""
