"""streamrec_stream_processor"""
