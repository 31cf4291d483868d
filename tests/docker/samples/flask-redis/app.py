"""A page that counts its views in Redis (the service `redis` of the compose file)."""

from flask import Flask
from redis import Redis

app = Flask(__name__)
redis = Redis(host="redis", port=6379)


@app.route("/")
def hello():
    count = redis.incr("hits")
    return f"This webpage has been viewed {count} time(s)"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=8000, debug=True)
