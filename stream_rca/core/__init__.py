"""stream_rca.core"""
