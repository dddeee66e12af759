"""streamrec_ingest"""
