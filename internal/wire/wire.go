// Package wire is the contract between certpush and certnode: where a node
// publishes what it has installed, what `certnode install --json` prints,
// and which bundle ids either side accepts. Both programs import it, so a
// change here is a change of protocol: keep it backward compatible.
package wire

import (
	"path"
	"time"
)

// StatusDir is the directory under a node's incoming directory where
// certnode publishes the manifest of each installed certificate, readable
// by the push account, so that certpush learns what a host has without
// root.
const StatusDir = ".status"

// StatusFile is the path, relative to the incoming directory, of the
// installed manifest of certificate name.
func StatusFile(name string) string { return path.Join(StatusDir, name+".json") }

// Results of installing one certificate, as certnode reports them.
const (
	Installed    = "installed"     // the new bundle is live, reloaded and verified
	Unchanged    = "unchanged"     // the candidate is what is installed already
	Nothing      = "nothing"       // no bundle waiting in incoming
	WouldInstall = "would_install" // dry run: the bundle verifies and would be installed
	Refused      = "refused"       // the bundle failed verification; nothing changed
	RolledBack   = "rolled_back"   // the test, reload or TLS check failed; the previous version is back
	Failed       = "failed"        // an error on this host, or a rollback that did not complete
)

// Succeeded reports whether an install result leaves the certificate where
// it should be: exit status 0 on the node.
func Succeeded(result string) bool {
	return result == Installed || result == Unchanged || result == Nothing || result == WouldInstall
}

// InstallResult is the outcome for one certificate. ID, Fingerprint and
// NotAfter describe the bundle that was considered (for unchanged and
// installed, the one now live); Previous is the id that was live before.
type InstallResult struct {
	Cert        string    `json:"cert"`
	Result      string    `json:"result"`
	ID          string    `json:"id"`
	Previous    string    `json:"previous"`
	Fingerprint string    `json:"fingerprint"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	Error       string    `json:"error"`
}

// InstallOutput is what `certnode install --json` prints on stdout.
// Results is never null.
type InstallOutput struct {
	Results []InstallResult `json:"results"`
}

// IDLen is the length of a bundle id: the first 16 hex digits of the
// leaf's SHA-256 fingerprint.
const IDLen = 16

// ValidID reports whether id is a well-formed bundle id: exactly IDLen
// lowercase hex digits. Anything else is refused before it is used in a
// path.
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
