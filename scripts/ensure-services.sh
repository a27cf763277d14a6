#!/usr/bin/env bash
# Make sure the local servers Sportello needs answer on 127.0.0.1:
#   rabbitmq    -> 5672
#   postgresql  -> 5432, with role sportello/sportello (LOGIN, CREATEDB) for the tests
# Running servers are left alone; installed-but-stopped ones are started; missing ones are
# installed with apt-get when running as root, otherwise the script says what to install.
#
# Tools the tests run (no server, only installed): xmlsec1 (used by the official spid-sp-test),
# chromium (Debian's Chromium and ChromeDriver, for the browser tests in tests/browser).
#
# Usage: scripts/ensure-services.sh [rabbitmq] [postgresql] [xmlsec1] [chromium]
set -euo pipefail

# Debian keeps the server commands in /usr/sbin, which is not on every user's PATH.
PATH="$PATH:/usr/sbin:/sbin"

PG_URL="postgresql://sportello:sportello@127.0.0.1:5432/postgres"
PG_ROLE_SQL="DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sportello') THEN
    CREATE ROLE sportello;
  END IF;
  ALTER ROLE sportello LOGIN CREATEDB PASSWORD 'sportello';
END \$\$;"

say() { echo "ensure-services: $*"; }
die() { echo "ensure-services: $*" >&2; exit 1; }

port_open() {  # port
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

wait_port() {  # name port seconds
    local deadline=$((SECONDS + $3))
    until port_open "$2"; do
        ((SECONDS < deadline)) || die "$1 did not open 127.0.0.1:$2 within $3 s"
        sleep 1
    done
}

port_of() {
    case $1 in
        rabbitmq) echo 5672 ;;
        postgresql) echo 5432 ;;
    esac
}

package_of() {
    case $1 in
        rabbitmq) echo rabbitmq-server ;;
        postgresql) echo postgresql ;;
        xmlsec1) echo xmlsec1 ;;
        chromium) echo chromium chromium-driver ;;
    esac
}

pg_version() {
    ls /etc/postgresql | sort -V | tail -1
}

installed() {
    case $1 in
        rabbitmq) command -v rabbitmq-server >/dev/null ;;
        postgresql) command -v pg_ctlcluster >/dev/null && [[ -n $(ls /etc/postgresql 2>/dev/null) ]] ;;
        xmlsec1) command -v xmlsec1 >/dev/null ;;
        chromium) [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] ;;
    esac
}

need_root() {  # what-to-do command...
    ((EUID == 0)) || die "$1 needs root; run: sudo ${*:2}"
}

start() {
    case $1 in
        rabbitmq)
            need_root "starting RabbitMQ" rabbitmq-server -detached
            say "starting RabbitMQ"
            rabbitmq-server -detached
            wait_port RabbitMQ 5672 90
            rabbitmqctl --quiet await_startup
            ;;
        postgresql)
            local version
            version=$(pg_version)
            need_root "starting PostgreSQL" pg_ctlcluster "$version" main start
            say "starting PostgreSQL $version"
            pg_ctlcluster --skip-systemctl-redirect "$version" main start
            wait_port PostgreSQL 5432 60
            ;;
    esac
}

pg_login_works() {
    command -v psql >/dev/null &&
        PGPASSWORD=sportello PGCONNECT_TIMEOUT=5 psql -X -q -At -h 127.0.0.1 -U sportello -d postgres \
            -c 'SELECT 1' >/dev/null 2>&1
}

ensure_pg_role() {
    if pg_login_works; then
        say "PostgreSQL role sportello can log in ($PG_URL)"
        return
    fi
    ((EUID == 0)) && id postgres >/dev/null 2>&1 ||
        die "cannot log in as sportello; create the role with:" \
            "sudo -u postgres psql -c \"CREATE ROLE sportello LOGIN CREATEDB PASSWORD 'sportello'\""
    say "creating/updating PostgreSQL role sportello"
    # cd / so psql, running as postgres, does not complain about an unreadable working directory.
    (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "$PG_ROLE_SQL")
    pg_login_works || die "role sportello exists but cannot log in over TCP; check pg_hba.conf ($PG_URL)"
    say "PostgreSQL role sportello can log in ($PG_URL)"
}

(($# > 0)) || die "usage: $0 [rabbitmq] [postgresql] [xmlsec1] [chromium]"
for service in "$@"; do
    [[ $service == rabbitmq || $service == postgresql || $service == xmlsec1 || $service == chromium ]] ||
        die "unknown service '$service' (rabbitmq, postgresql, xmlsec1, chromium)"
done

# 1. What is already up, what only needs starting, what is missing.
to_start=()
missing=()
for service in "$@"; do
    if [[ $service == xmlsec1 || $service == chromium ]]; then  # a tool: installed or not, nothing to start
        if installed "$service"; then say "$service is installed"; else missing+=($(package_of "$service")); fi
        continue
    fi
    if port_open "$(port_of "$service")"; then
        say "$service already answers on 127.0.0.1:$(port_of "$service")"
    else
        to_start+=("$service")
        installed "$service" || missing+=("$(package_of "$service")")
    fi
done

# 2. Install what is missing, or say exactly what to install.
if ((${#missing[@]} > 0)); then
    if ((EUID == 0)) && command -v apt-get >/dev/null; then
        say "installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    else
        die "missing ${missing[*]}; install with: sudo apt-get install ${missing[*]}"
    fi
fi

# 3. Start what is stopped (a package's install scripts may already have started it).
for service in "${to_start[@]}"; do
    if port_open "$(port_of "$service")"; then
        say "$service answers on 127.0.0.1:$(port_of "$service")"
    else
        start "$service"
        say "$service started, answers on 127.0.0.1:$(port_of "$service")"
    fi
done

# 4. PostgreSQL: the role the tests log in with.
for service in "$@"; do
    if [[ $service == postgresql ]]; then
        ensure_pg_role
    fi
done
