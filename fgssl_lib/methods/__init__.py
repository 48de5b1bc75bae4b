"""fgssl_lib.methods"""
