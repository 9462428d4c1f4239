"""Clustering: coordination through etcd; may import atp.limits only so far."""
