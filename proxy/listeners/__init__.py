"""Where connections arrive: the app's outbound requests, peers' inbound mTLS, transparent interception, TCP relays."""
