"""fgssl_lib.train"""
