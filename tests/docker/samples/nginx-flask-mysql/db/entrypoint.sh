#!/bin/bash
# A new (empty) data directory gets root's password from $MYSQL_ROOT_PASSWORD_FILE, for
# local and remote connections, and the database $MYSQL_DATABASE; then mariadbd runs
# with the compose file's arguments.
set -euo pipefail
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld /var/lib/mysql
if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql \
        --auth-root-authentication-method=normal >/dev/null
    password=$(cat "$MYSQL_ROOT_PASSWORD_FILE")
    password=${password//\'/\'\'}
    mariadbd --user=mysql --bootstrap >/dev/null <<SQL
FLUSH PRIVILEGES;
ALTER USER 'root'@'localhost' IDENTIFIED BY '$password';
CREATE USER 'root'@'%' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS \`${MYSQL_DATABASE:-example}\`;
SQL
fi
exec mariadbd --user=mysql --bind-address=0.0.0.0 "$@"
