"""streamrec_shared"""
