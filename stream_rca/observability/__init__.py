"""stream_rca.observability"""
