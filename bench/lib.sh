# Shared by the bench scripts that measure Apache under wrk (attach.sh,
# pools.sh, timeline.sh, fleet.sh): sourced, not run.

# A free port on 127.0.0.1.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# apache_bench_conf DIR PORT: DIR/htdocs with a 2 KiB page and DIR/httpd.conf
# for it on 127.0.0.1:PORT: the event MPM, one child of 16 threads (one
# attach covers every request), keep-alive.
apache_bench_conf() {
	local D=$1 P=$2 M=/usr/lib/apache2/modules UG=""
	mkdir -p "$D/htdocs" && chmod 0755 "$D" "$D/htdocs"
	head -c 2048 /dev/zero | tr '\0' x > "$D/htdocs/index.html"
	chmod 0644 "$D/htdocs/index.html"
	[ "$(id -u)" = 0 ] && UG="User www-data
Group www-data"
	cat > "$D/httpd.conf" <<CONF
ServerRoot "$D"
ServerName 127.0.0.1
DefaultRuntimeDir "$D"
Listen 127.0.0.1:$P
PidFile "$D/httpd.pid"
ErrorLog "$D/error.log"
LoadModule mpm_event_module $M/mod_mpm_event.so
LoadModule authz_core_module $M/mod_authz_core.so
LoadModule dir_module $M/mod_dir.so
LoadModule mime_module $M/mod_mime.so
$UG
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MinSpareThreads 1
MaxSpareThreads 16
MaxRequestWorkers 16
KeepAlive On
TypesConfig /etc/mime.types
DocumentRoot "$D/htdocs"
<Directory "$D/htdocs">
    Require all granted
</Directory>
CONF
}

# apache_bench_ready PORT: waits (10 s at most) until the page is served,
# then warms up with one second of wrk.
apache_bench_ready() {
	for i in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$1/" && break; sleep 0.1; done
	wrk -t1 -c8 -d1s "http://127.0.0.1:$1/" > /dev/null 2>&1
}
