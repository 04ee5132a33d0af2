"""The processor: event log → tracking plan → enrichment → identity → profiles → lake."""

#: The processor group's consumer group in the event log (a light module: the API's
#: health checks read its lag without loading the processor).
GROUP = "processor"
