// Package testnet is the network plumbing the fault suite and the soak
// share: Proxy, a loopback TCP proxy that can cut or blackhole
// connections, and Netns, a network namespace joined to the root one by
// a veth pair, with relays inside it in front of a host's daemons, whose
// link can be taken down (a partition) or made to lose packets.
//
// Everything here talks only to loopback and to the namespaces it
// creates. Netns needs root and the ip and nft tools.
package testnet
