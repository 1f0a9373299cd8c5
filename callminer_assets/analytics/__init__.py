"""Analytics outputs beyond pure transforms: alerts (Slack), Parquet exports, the HR roster."""
