"""streamrec_recommender"""
