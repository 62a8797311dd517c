#!/usr/bin/env bash
# Sets up a fresh Debian machine for xsw, builds it, and runs a demo:
# two namespaced hosts on veths and one tap-attached "guest" (a stand-in for
# a VM), all switched by xswd. Prints the port list, MAC table and counters.
#
# Everything runs in network namespaces this script creates, with addresses
# from 198.18.0.0/15 (the benchmarking range), and is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
  echo "demo: run as root (sudo $0): it creates namespaces, veths and taps" >&2
  exit 1
fi

./deploy/install-deps.sh
echo "== building (release)"
cargo build --release --workspace --bins

bin=target/release
tag=xswdemo$$
sw=$tag-sw; h1=$tag-h1; h2=$tag-h2; guest=$tag-vm
sock=/tmp/$tag/xsw.sock
guest_pid=
xswd_pid=

iperf_pid=

cleanup() {
  set +e
  for pid in $iperf_pid $guest_pid $xswd_pid; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  # Anything still holding our files (every command line names /tmp/$tag or a
  # namespace called $tag-*) is ours: make sure nothing outlives the demo.
  pkill -f "$tag" 2>/dev/null
  for ns in $sw $h1 $h2 $guest; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "/tmp/$tag"
  if pgrep -f "$tag" >/dev/null; then
    echo "demo: processes of this demo are still running: $(pgrep -f "$tag" | tr '\n' ' ')" >&2
  fi
}
trap cleanup EXIT INT TERM

# Background jobs are started with `ip netns exec` itself, never through a shell
# function: `$!` must be the pid of the program (ip netns exec execs it), not of
# a subshell that a kill would miss.
in_ns() { ip netns exec "$1" "${@:2}"; }
ctl() { in_ns $sw $bin/xswctl --socket "$sock" "$@"; }

echo "== topology: host1 --veth--+"
echo "                           xswd --tap-- guest (VM stand-in)"
echo "             host2 --veth--+"
mkdir -p "/tmp/$tag"
for ns in $sw $h1 $h2 $guest; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
for i in 1 2; do
  host=$tag-h$i
  ip link add "sw-h$i" type veth peer name eth0 netns "$host"
  ip link set "sw-h$i" netns $sw
  ip -n $sw link set "sw-h$i" up
  ip -n "$host" link set eth0 address "02:00:00:00:00:0$i"
  ip -n "$host" addr add "198.18.77.$i/24" dev eth0
  ip -n "$host" link set eth0 up
done

echo "== starting xswd"
: >"/tmp/$tag/xsw.toml"   # xswd saves every change made with xswctl here
ip netns exec $sw $bin/xswd --socket "$sock" --config "/tmp/$tag/xsw.toml" >"/tmp/$tag/xswd.log" 2>&1 &
xswd_pid=$!
for _ in $(seq 50); do ctl status >/dev/null 2>&1 && break; sleep 0.1; done
ctl status >/dev/null

ctl port add sw-h1
ctl port add sw-h2
# A tap for the guest, created by xsw the way libvirt would create one.
ctl port add vm1 --create-tap
ip netns exec $sw $bin/xsw-guest --tap vm1 --peer eth0 --netns $guest --no-stdin &
guest_pid=$!
for _ in $(seq 50); do ip -n $guest link show eth0 >/dev/null 2>&1 && break; sleep 0.1; done
ip -n $guest link set eth0 address 02:00:00:00:00:03
ip -n $guest addr add 198.18.77.3/24 dev eth0
ip -n $guest link set eth0 up
sleep 0.5

echo; echo "== ports"; ctl port list

echo; echo "== ping host1 -> host2, host1 -> guest, guest -> host2"
in_ns $h1 ping -c 3 -i 0.2 -W 1 198.18.77.2 | tail -2
in_ns $h1 ping -c 3 -i 0.2 -W 1 198.18.77.3 | tail -2
in_ns $guest ping -c 3 -i 0.2 -W 1 198.18.77.2 | tail -2

echo; echo "== TCP host1 -> guest (iperf3, 2 s)"
ip netns exec $guest timeout 10 iperf3 -s -1 -B 198.18.77.3 >/dev/null 2>&1 &
iperf_pid=$!
sleep 0.5
in_ns $h1 timeout 10 iperf3 -c 198.18.77.3 -t 2 | grep -E "sender|receiver"

echo; echo "== MAC table"; ctl fdb show
echo; echo "== counters"; ctl stats
echo; cleanup
trap - EXIT
if pgrep -f "$tag" >/dev/null; then exit 1; fi
echo "demo done: everything it created is removed now."
