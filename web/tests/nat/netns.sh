#!/usr/bin/env bash
# Builds (or removes) the NAT test topology of shared/docs/testing.md in network namespaces:
#
#   lan1 10.10.1.2 — 10.10.1.1 [nat1: masquerade = port-restricted cone] 203.0.113.1 ─┐
#   lan2 10.10.2.2 — 10.10.2.1 [nat2: masquerade = port-restricted cone] 203.0.113.2 ─┼ bridge in pub 203.0.113.10
#   lan3 10.10.3.2 — 10.10.3.1 [nat3: masquerade random = symmetric]    203.0.113.3 ─┤
#   lan4 10.10.4.2 — 10.10.4.1 [nat4: cone, outbound UDP blocked]      203.0.113.4 ─┘
#
# nat4 is a corporate firewall that lets only TCP out: calls need TURN over TCP.
#
# Each NAT drops unsolicited inbound WAN traffic (INPUT and FORWARD), like a home router.
# 203.0.113.0/24 is a documentation range: it exists only inside these namespaces.
#
# usage: netns.sh up PREFIX | netns.sh down PREFIX   (namespaces are PREFIXpub, PREFIXnat1, ...)
set -euo pipefail
cmd=${1:?up|down}
P=${2:?prefix}
NAMES="pub nat1 nat2 nat3 nat4 lan1 lan2 lan3 lan4"
ns() { local n=$1; shift; ip netns exec "$P$n" "$@"; }

down() {
  for n in $NAMES; do ip netns del "$P$n" 2>/dev/null || true; done
}

if [ "$cmd" = down ]; then
  down
  exit 0
fi
[ "$cmd" = up ] || { echo "usage: $0 up|down PREFIX" >&2; exit 2; }
down
for n in $NAMES; do
  ip netns add "$P$n"
  ns "$n" ip link set lo up
done
ns pub ip link add br0 type bridge
ns pub ip addr add 203.0.113.10/24 dev br0
ns pub ip link set br0 up
for i in 1 2 3 4; do
  ip link add "${P}w$i" type veth peer name "${P}b$i"
  ip link set "${P}w$i" netns "${P}nat$i"
  ip link set "${P}b$i" netns "${P}pub"
  ns "nat$i" ip link set "${P}w$i" name wan
  ns pub ip link set "${P}b$i" master br0 up
  ns "nat$i" ip addr add "203.0.113.$i/24" dev wan
  ns "nat$i" ip link set wan up

  ip link add "${P}l$i" type veth peer name "${P}g$i"
  ip link set "${P}l$i" netns "${P}lan$i"
  ip link set "${P}g$i" netns "${P}nat$i"
  ns "lan$i" ip link set "${P}l$i" name eth0
  ns "nat$i" ip link set "${P}g$i" name lan
  ns "lan$i" ip addr add "10.10.$i.2/24" dev eth0
  ns "lan$i" ip link set eth0 up
  ns "lan$i" ip route add default via "10.10.$i.1"
  ns "nat$i" ip addr add "10.10.$i.1/24" dev lan
  ns "nat$i" ip link set lan up
  ns "nat$i" sysctl -qw net.ipv4.ip_forward=1

  masq="masquerade"
  [ "$i" = 3 ] && masq="masquerade random"
  udp_out=""
  [ "$i" = 4 ] && udp_out='oifname "wan" meta l4proto udp drop'
  ns "nat$i" nft -f - <<NFT
table ip nat {
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    oifname "wan" $masq
  }
}
table ip filter {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
    $udp_out
  }
}
NFT
done
