// Package soak runs certpush unattended, in compressed time, against a real
// fleet (sshd + nginx per host on loopback) and a real pebble issuing
// certificates of a few minutes, while faults are injected on a schedule,
// and measures from the outside (a TLS probe of every endpoint several
// times a second) whether any endpoint ever served an expired certificate.
//
// The short version (5 hosts, about five renewal cycles) runs as a normal
// test; `make soak` runs the long one (20 hosts, 30+ cycles, every fault)
// and rewrites SOAK.md and soak/*.png at the top of the repository. See
// docs/soak.md.
package soak
