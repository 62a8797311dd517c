#!/usr/bin/env bash
# The port-to-port scenario (veth -> xsw -> veth, one worker) against the
# Linux bridge, a bare AF_XDP forwarder, a bare XDP redirect and no switch.
# Same environment knobs as bench/scenario.sh, which it runs:
#
#   sudo bench/port-to-port.sh [DURATION]
exec "$(dirname "${BASH_SOURCE[0]}")/scenario.sh" port-to-port "$@"
