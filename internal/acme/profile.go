package acme

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// ErrUnknownProfile is returned by Obtain (before any order) and
// CheckProfile when the CA does not advertise the requested profile.
var ErrUnknownProfile = errors.New("unknown certificate profile")

// Profiles returns the certificate profiles the CA's directory advertises
// (name -> description); empty when it advertises none.
func (c *Client) Profiles(ctx context.Context) (map[string]string, error) {
	cl, err := c.legoClient(ctx, c.acct)
	if err != nil {
		return nil, err
	}
	return cl.GetServerMetadata().Profiles, nil
}

// checkProfile refuses a profile the CA does not offer, naming those it does.
func checkProfile(profile string, offered map[string]string) error {
	if profile == "" {
		return nil
	}
	if _, ok := offered[profile]; ok {
		return nil
	}
	if len(offered) == 0 {
		return fmt.Errorf("%w %q: the CA's directory advertises no profiles (remove profile: to take its default)", ErrUnknownProfile, profile)
	}
	names := make([]string, 0, len(offered))
	for n, desc := range offered {
		if desc != "" {
			n += " (" + desc + ")"
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Errorf("%w %q: the CA offers %s", ErrUnknownProfile, profile, strings.Join(names, ", "))
}

// ProfileLimit is what a CA documents about one of its profiles.
type ProfileLimit struct {
	// MaxNames is the most identifiers one certificate may hold.
	MaxNames int
	// Lifetime is the documented validity, for the docs and messages.
	Lifetime string
}

// letsEncryptProfiles are Let's Encrypt's documented profiles
// (https://letsencrypt.org/docs/profiles/); the directory's list stays the
// authority on which exist.
var letsEncryptProfiles = map[string]ProfileLimit{
	"classic":    {MaxNames: 100, Lifetime: "90 days (64 from February 2027, 45 from February 2028)"},
	"tlsserver":  {MaxNames: 100, Lifetime: "90 days, moving with classic"},
	"shortlived": {MaxNames: 100, Lifetime: "160 hours (six days)"},
}

// isLetsEncrypt reports whether directory is one of Let's Encrypt's
// (production or staging).
func isLetsEncrypt(directory string) bool {
	u, err := url.Parse(directory)
	if err != nil {
		return false
	}
	h := strings.ToLower(u.Hostname())
	return h == "api.letsencrypt.org" || strings.HasSuffix(h, ".api.letsencrypt.org")
}

// CheckProfileLimits checks, without asking the CA, what the CA at
// directory documents about profile: for Let's Encrypt, its number of
// names. Other CAs and unknown profiles pass; the directory is asked
// before ordering.
func CheckProfileLimits(directory, profile string, domains []string) error {
	if !isLetsEncrypt(directory) {
		return nil
	}
	name := profile
	if name == "" {
		name = "classic"
	}
	lim, ok := letsEncryptProfiles[name]
	if !ok {
		return nil
	}
	if lim.MaxNames > 0 && len(domains) > lim.MaxNames {
		return fmt.Errorf("%w: %d names, but Let's Encrypt's %s profile allows at most %d per certificate", ErrConfig, len(domains), name, lim.MaxNames)
	}
	return nil
}
