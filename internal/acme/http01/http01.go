// Package http01 is what both sides of an ACME HTTP-01 challenge agree on:
// the alphabet of a token and the path at which the CA fetches it. The
// ACME client (package acme) checks tokens before publishing them, and the
// publishers (push.Webroot) check them again before using one in a path.
package http01

// Dir is the directory under a webroot, and the URL path without its
// leading slash, that holds the token files.
const Dir = ".well-known/acme-challenge"

// MaxTokenLen bounds a token. RFC 8555 tokens are 43 characters; the bound
// only keeps a path built from one reasonable.
const MaxTokenLen = 256

// ChallengePath is the URL path, and the path under a webroot, at which the
// CA fetches token.
func ChallengePath(token string) string {
	return "/" + Dir + "/" + token
}

// ValidToken reports whether token is non-empty base64url (RFC 8555
// section 8.3: [A-Za-z0-9_-]) of at most MaxTokenLen characters, so that
// it never holds '/' or '..'.
func ValidToken(token string) bool {
	if token == "" || len(token) > MaxTokenLen {
		return false
	}
	for _, r := range token {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}
