package acme

// zz_providers.go (written by scripts/gen-lego-providers.sh from lego's own
// factory) is the only file that imports lego's DNS providers (about 200 of
// them, each with its SDK): a few minutes of cold build and tens of
// megabytes of binary, the price of choosing any of them by name. lego's
// providers/dns package itself is not imported: it needs every provider,
// and the SDKs of those in excludedProviders are not served by the Go
// module proxy at the versions lego requires.

import (
	"fmt"
	"slices"

	"github.com/go-acme/lego/v5/challenge"
)

// dnsProvider returns lego's DNS provider called name, configured from its
// environment variables. An unknown name or missing credentials are
// ErrConfig.
func dnsProvider(name string) (challenge.Provider, error) {
	if slices.Contains(excludedProviders, name) {
		return nil, fmt.Errorf("%w: dns-01 provider %s: not included in this build of certpush (its SDK is not available); use another provider, e.g. exec or rfc2136", ErrConfig, name)
	}
	p, err := newLegoDNSProvider(name)
	if err != nil {
		// An unknown name, or credentials missing from the environment.
		return nil, fmt.Errorf("%w: dns-01 provider %s: %v", ErrConfig, name, err)
	}
	return p, nil
}
