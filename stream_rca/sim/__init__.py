"""stream_rca.sim"""
