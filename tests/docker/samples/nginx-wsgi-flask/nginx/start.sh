#!/bin/bash
# Render the mounted template with the Flask app's address, then run nginx in the foreground.
set -e
envsubst '$FLASK_SERVER_ADDR' </tmp/default.conf >/etc/nginx/conf.d/default.conf
exec nginx -g 'daemon off;'
