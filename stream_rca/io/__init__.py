"""stream_rca.io"""
