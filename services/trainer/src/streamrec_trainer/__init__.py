"""streamrec_trainer"""
