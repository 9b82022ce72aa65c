// Package faults breaks a real test fleet (OpenSSH sshd and nginx per
// host, see internal/testfleet) in the ways a production fleet breaks, and
// checks after every fault that each host serves the old or the new
// certificate with its matching key, that no partial bundle is installed,
// that no private key is readable by others or written to a log, and that
// a later push converges the fleet. Its tests run with `go test ./...`.
//
// The network plumbing it shares with the soak (a loopback proxy that
// cuts or blackholes connections, network namespaces with relays) is in
// internal/testnet.
package faults
