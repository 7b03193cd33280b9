"""stream_rca.streaming"""
