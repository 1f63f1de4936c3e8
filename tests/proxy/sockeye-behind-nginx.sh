#!/usr/bin/env bash
# sockeye behind Debian's nginx, as one command that the interop suites can start in place of
# sockeye (SOCKEYE_SERVER_CMD):
#
#   SOCKEYE_PROXIED_CMD="target/release/sockeye --app echo" \
#     tests/proxy/sockeye-behind-nginx.sh [SOCKEYE ARGS...] --host 127.0.0.1 --port 0
#
# It starts `$SOCKEYE_PROXIED_CMD ARGS --host 127.0.0.1 --port 0` (run through `sh -c`, like
# the suites run their command), reads the port sockeye bound, then starts nginx on another
# free port of 127.0.0.1 with deploy/nginx/sockeye.conf, changed only where it names addresses
# (its `listen` lines and its upstream server). Once a request through nginx has been answered
# by sockeye, it prints
#
#   sockeye listening on http://127.0.0.1:<NGINX PORT>
#
# and waits. The --host and --port it is given are dropped: sockeye listens on 127.0.0.1 and a
# port of its own choosing, and the announced address is nginx's.
#
# Processes: sockeye and nginx (master and workers) are children in this script's process
# group, with neither daemonising nor starting a session of its own, so the suites' SIGKILL
# of the group ends all of them. SIGTERM/SIGINT/SIGHUP, or either child exiting, stops both
# and removes the temporary directory; this script exits non-zero when a child died first.
#
# Everything nginx writes goes to a fresh directory (config, pid, temp paths; no access log,
# errors on stderr), so it runs as any user. Under root its workers run as root too, so that
# they can use that directory. sockeye's output and nginx's warnings are copied to stderr
# with a `[sockeye] ` or `[nginx] ` prefix, so sockeye's own listening line can never be
# mistaken for this script's.
#
# Environment:
#   SOCKEYE_PROXIED_CMD    the sockeye command line, without --host/--port (required)
#   SOCKEYE_NGINX          the nginx binary [default: nginx on PATH, else /usr/sbin/nginx, ...]
#   SOCKEYE_PROXY_TMPDIR   where each run makes its directory [default: $TMPDIR or /tmp];
#                          a run also removes the directories of earlier runs there whose
#                          script is gone (a SIGKILL gives no chance to clean up)
#   SOCKEYE_NGINX_CONF     the site file to test [default: deploy/nginx/sockeye.conf]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SITE_CONF=${SOCKEYE_NGINX_CONF:-$ROOT/deploy/nginx/sockeye.conf}
BASE_TMP=${SOCKEYE_PROXY_TMPDIR:-${TMPDIR:-/tmp}}
SOCKEYE_START_S=10
NGINX_START_S=10

die() {
  echo "sockeye-behind-nginx: $*" >&2
  exit 1
}

find_nginx() {
  local candidate
  if [ -n "${SOCKEYE_NGINX:-}" ]; then
    [ -x "$SOCKEYE_NGINX" ] || die "SOCKEYE_NGINX=$SOCKEYE_NGINX is not an executable"
    printf '%s\n' "$SOCKEYE_NGINX"
    return 0
  fi
  for candidate in "$(command -v nginx 2>/dev/null || true)" \
    /usr/sbin/nginx /usr/local/sbin/nginx /usr/local/nginx/sbin/nginx; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  return 1
}

[ -n "${SOCKEYE_PROXIED_CMD:-}" ] ||
  die "SOCKEYE_PROXIED_CMD is not set (e.g. SOCKEYE_PROXIED_CMD=\"target/release/sockeye --app echo\")"
NGINX=$(find_nginx) ||
  die "nginx not found (not on PATH, not /usr/sbin/nginx): install Debian's nginx, or set SOCKEYE_NGINX"
[ -r "$SITE_CONF" ] || die "cannot read the site file $SITE_CONF"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to pick a free port"

# sockeye's arguments: everything given, less --host/--port and their values.
declare -a ARGS=()
while [ "$#" -gt 0 ]; do
  case $1 in
    --host | --port) shift 2 || shift ;;
    --host=* | --port=*) shift ;;
    *)
      ARGS+=("$1")
      shift
      ;;
  esac
done

# Directories of earlier runs whose script is gone.
mkdir -p "$BASE_TMP"
for old in "$BASE_TMP"/sockeye-nginx.*; do
  [ -f "$old/wrapper.pid" ] || continue
  old_pid=$(cat "$old/wrapper.pid" 2>/dev/null || true)
  if [[ $old_pid =~ ^[0-9]+$ ]] && [ ! -d "/proc/$old_pid" ]; then
    rm -rf "$old"
  fi
done

TMP=$(mktemp -d "$BASE_TMP/sockeye-nginx.XXXXXXXX")
echo "$$" >"$TMP/wrapper.pid"
SOCKEYE_PID=
NGINX_PID=
RELAY_PID=

# Stops both children (TERM, then KILL after 5 s) and removes the directory.
cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  local pids=() pid i
  for pid in "$NGINX_PID" "$SOCKEYE_PID" "$RELAY_PID"; do
    [ -n "$pid" ] && pids+=("$pid")
  done
  if [ "${#pids[@]}" -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      local alive=0
      for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null && alive=1
      done
      [ "$alive" -eq 0 ] && break
      sleep 0.1
    done
    # nginx's workers outlive a SIGKILLed master: kill them first, while they are still its
    # children.
    if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null && command -v pkill >/dev/null 2>&1; then
      pkill -KILL -P "$NGINX_PID" 2>/dev/null || true
    fi
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# --- sockeye ---------------------------------------------------------------------------------
mkfifo "$TMP/sockeye.out"
# The command runs through `sh -c` like the suites run theirs; `exec` makes its pid sockeye's.
sh -c "exec $SOCKEYE_PROXIED_CMD \"\$@\"" sockeye "${ARGS[@]}" --host 127.0.0.1 --port 0 \
  >"$TMP/sockeye.out" 2>&1 </dev/null &
SOCKEYE_PID=$!
echo "$SOCKEYE_PID" >"$TMP/sockeye.pid"
exec 4<"$TMP/sockeye.out"

UPSTREAM=
deadline=$((SECONDS + SOCKEYE_START_S))
while :; do
  # One read per line, bounded by what is left of the deadline; a failed read is either the
  # deadline or the end of sockeye's output. (`read -t 0` would read nothing.)
  left=$((deadline - SECONDS))
  [ "$left" -gt 0 ] || break
  IFS= read -r -t "$left" line <&4 || break
  printf '[sockeye] %s\n' "$line" >&2
  if [[ $line =~ ^sockeye\ listening\ on\ http://(127\.0\.0\.1:[0-9]+)[[:space:]]*$ ]]; then
    UPSTREAM=${BASH_REMATCH[1]}
    break
  fi
done
if [ -z "$UPSTREAM" ]; then
  kill -0 "$SOCKEYE_PID" 2>/dev/null || die "sockeye exited before printing its listening line"
  die "sockeye did not print its listening line within ${SOCKEYE_START_S} s"
fi
# From now on, only relay its output (always reading, so sockeye never blocks on a full pipe).
sed -u 's/^/[sockeye] /' <&4 >&2 &
RELAY_PID=$!
exec 4<&-

# --- nginx -----------------------------------------------------------------------------------
mkdir -p "$TMP/temp"
cp "$SITE_CONF" "$TMP/site.conf.orig"

# site.conf: the shipped file with the addresses of this run. Each edit must hit exactly the
# lines it expects, so a reshaped deploy/nginx/sockeye.conf fails here, loudly, instead of
# being half tested.
write_site() {
  local port=$1 want got
  sed -E \
    -e "s/^([[:space:]]*)listen 80;/\\1listen 127.0.0.1:$port;/" \
    -e "/^[[:space:]]*listen \\[::\\]:80;/d" \
    -e "s/^([[:space:]]*server )127\\.0\\.0\\.1:3000( |;)/\\1$UPSTREAM\\2/" \
    "$TMP/site.conf.orig" >"$TMP/site.conf"
  for want in "listen 127.0.0.1:$port;" "server $UPSTREAM"; do
    got=$(grep -c -F -- "$want" "$TMP/site.conf" || true)
    [ "$got" -eq 1 ] || die "$SITE_CONF: expected exactly one line to become \`$want\`, got $got"
  done
  got=$(grep -c -E '^[[:space:]]*listen ' "$TMP/site.conf" || true)
  [ "$got" -eq 1 ] || die "$SITE_CONF: expected only the lines \`listen 80;\` and \`listen [::]:80;\`"
  got=$(grep -c -E '^[[:space:]]*server [^{]*;' "$TMP/site.conf" || true)
  [ "$got" -eq 1 ] || die "$SITE_CONF: expected one active upstream server, found $got"
}

USER_LINE=
if [ "$(id -u)" -eq 0 ]; then
  USER_LINE="user root;"
fi
MIME_TYPES=
if [ -r /etc/nginx/mime.types ]; then
  MIME_TYPES="include /etc/nginx/mime.types;"
fi

# The main file: Debian's /etc/nginx/nginx.conf where it matters to proxying (HTTP/1.1
# defaults, gzip on, sendfile), with every path inside $TMP.
cat >"$TMP/nginx.conf" <<EOF
$USER_LINE
worker_processes 2;
pid $TMP/nginx.pid;
error_log stderr warn;
events {
    worker_connections 1024;
}
http {
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    $MIME_TYPES
    default_type application/octet-stream;
    access_log off;
    gzip on;
    client_body_temp_path $TMP/temp/client_body;
    proxy_temp_path $TMP/temp/proxy;
    fastcgi_temp_path $TMP/temp/fastcgi;
    uwsgi_temp_path $TMP/temp/uwsgi;
    scgi_temp_path $TMP/temp/scgi;
    include $TMP/site.conf;
}
EOF

# Answers 0 once a request through nginx on $1 reaches the Engine.IO server behind it: an
# unknown transport is answered 400 {"code":0,...} by any Engine.IO server (sockeye and the
# reference server alike) without opening a session, while nginx itself would answer 502
# as long as the upstream cannot be reached.
reaches_upstream() {
  local status_line
  { exec 5<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET /socket.io/?EIO=4&transport=probe HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&5
  IFS= read -r -t 2 status_line <&5 || true
  exec 5<&-
  [[ $status_line == "HTTP/1."[01]" 400"* ]]
}

# The free port can be taken between choosing it and nginx binding it: then nginx exits, and
# another port is tried.
LISTEN=
for attempt in 1 2 3 4 5; do
  port=$(free_port)
  write_site "$port"
  "$NGINX" -t -q -p "$TMP" -e stderr -c "$TMP/nginx.conf" -g 'daemon off;' ||
    die "nginx -t refused the configuration (deploy/nginx/sockeye.conf with port $port)"
  "$NGINX" -p "$TMP" -e stderr -c "$TMP/nginx.conf" -g 'daemon off;' \
    2> >(sed -u 's/^/[nginx] /' >&2) </dev/null &
  NGINX_PID=$!
  deadline=$((SECONDS + NGINX_START_S))
  while [ "$SECONDS" -lt "$deadline" ] && kill -0 "$NGINX_PID" 2>/dev/null; do
    if reaches_upstream "$port"; then
      LISTEN=127.0.0.1:$port
      break
    fi
    sleep 0.05
  done
  [ -n "$LISTEN" ] && break
  if kill -0 "$NGINX_PID" 2>/dev/null; then
    die "nginx on port $port did not pass a request to the upstream within ${NGINX_START_S} s"
  fi
  wait "$NGINX_PID" 2>/dev/null || true
  NGINX_PID=
  echo "sockeye-behind-nginx: nginx exited on port $port (attempt $attempt); trying another" >&2
done
[ -n "$LISTEN" ] || die "nginx did not start"

kill -0 "$SOCKEYE_PID" 2>/dev/null || die "sockeye exited"
echo "sockeye listening on http://$LISTEN"

# Until either child exits, or a signal arrives (the trap runs cleanup).
set +e
wait -n "$SOCKEYE_PID" "$NGINX_PID"
status=$?
if kill -0 "$SOCKEYE_PID" 2>/dev/null; then
  echo "sockeye-behind-nginx: nginx exited (status $status); stopping sockeye" >&2
else
  echo "sockeye-behind-nginx: sockeye exited (status $status); stopping nginx" >&2
fi
exit 1
