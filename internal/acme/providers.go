package acme

// This file is the only one that imports all of lego's DNS providers
// (about 180 of them, each with its SDK): a few minutes of cold build and
// tens of megabytes of binary, the price of choosing any of them by name.

import (
	"fmt"

	"github.com/go-acme/lego/v4/challenge"
	"github.com/go-acme/lego/v4/providers/dns"
)

// dnsProvider returns lego's DNS provider called name, configured from its
// environment variables. An unknown name or missing credentials are
// ErrConfig.
func dnsProvider(name string) (challenge.Provider, error) {
	p, err := dns.NewDNSChallengeProviderByName(name)
	if err != nil {
		// An unknown name, or credentials missing from the environment.
		return nil, fmt.Errorf("%w: dns-01 provider %s: %v", ErrConfig, name, err)
	}
	return p, nil
}
