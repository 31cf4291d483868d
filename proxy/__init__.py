"""The sidecar proxy: mTLS data path driven by xDS."""
