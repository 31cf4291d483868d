"""A small Flask app behind nginx: a greeting, request details and a health check."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello World!"


@app.route("/cache-me")
def cache_me():
    return "nginx will cache this response"


@app.route("/info")
def info():
    return jsonify(
        {
            "connecting_ip": request.headers.get("X-Real-IP"),
            "proxy_ip": request.headers.get("X-Forwarded-For"),
            "host": request.headers.get("Host"),
            "user-agent": request.headers.get("User-Agent"),
        }
    )


@app.route("/flask-health-check")
def flask_health_check():
    return "success"
