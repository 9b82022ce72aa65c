// Package faults breaks a real test fleet (OpenSSH sshd and nginx per
// host, see internal/testfleet) in the ways a production fleet breaks, and
// checks after every fault that each host serves the old or the new
// certificate with its matching key, that no partial bundle is installed,
// that no private key is readable by others or written to a log, and that
// a later push converges the fleet. Its tests run with `go test ./...`.
//
// The package itself holds the helpers the tests need that are worth
// reading on their own, such as Proxy, a loopback TCP proxy that cuts
// connections after a number of bytes.
package faults
