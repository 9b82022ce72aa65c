package acme

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-acme/lego/v5/challenge/dnspersist01"
	"github.com/go-acme/lego/v5/lego"
	"github.com/miekg/dns"
)

// DNSPersist01 is the dns-persist-01 challenge: one TXT record per name,
// set once, that lets this ACME account (and only it) get certificates for
// the name from the CA it names, with no DNS change at issuance.
const DNSPersist01 = "dns-persist-01"

// persistLabel is the label of the record under each name.
const persistLabel = "_validation-persist."

// ErrPersistRecord is returned when the dns-persist-01 records are not
// all in place; the error's text says what is missing where.
var ErrPersistRecord = errors.New("dns-persist-01 record not in place")

// PersistRecord is one TXT record to create once for dns-persist-01.
type PersistRecord struct {
	// Name is the record's fully qualified name:
	// _validation-persist.<domain>. (without a leading "*.").
	Name string
	// Value is the TXT value: the CA's issuer domain name, then
	// accounturi=, and policy=wildcard and persistUntil= when set.
	Value string
	// Domains are the certificate's names the record covers.
	Domains []string
	// Wildcard tells whether the record allows wildcard certificates.
	Wildcard bool
}

// String renders the record as a zone file line.
func (r PersistRecord) String() string {
	return r.Name + " IN TXT " + strconv.Quote(r.Value)
}

// AccountURI is the ACME account's URL, which dns-persist-01 records name.
func (c *Client) AccountURI() string {
	if c.acct == nil || c.acct.reg == nil {
		return ""
	}
	return c.acct.reg.URI
}

// IssuerDomainNames returns the issuer domain names the CA's directory
// advertises (caaIdentities), which dns-persist-01 records start with.
func (c *Client) IssuerDomainNames(ctx context.Context) ([]string, error) {
	cl, err := c.legoClient(ctx, c.acct)
	if err != nil {
		return nil, err
	}
	return cl.GetServerMetadata().CaaIdentities, nil
}

// issuerFor picks the issuer domain name for records: the configured one,
// which the CA must advertise when it advertises any, else the CA's first.
func issuerFor(configured string, offered []string) (string, error) {
	configured = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(configured)), ".")
	if configured != "" {
		if len(offered) > 0 && !slices.Contains(offered, configured) {
			return "", fmt.Errorf("%w: issuer_domain_name %q is not one the CA advertises (%s)", ErrConfig, configured, strings.Join(offered, ", "))
		}
		return configured, nil
	}
	if len(offered) == 0 {
		return "", fmt.Errorf("%w: the CA's directory advertises no caaIdentities: set the challenge's issuer_domain_name to the name the CA documents for dns-persist-01", ErrConfig)
	}
	sorted := slices.Clone(offered)
	sort.Strings(sorted)
	return sorted[0], nil
}

// PersistRecords returns the TXT records that let accountURI get
// certificates for domains from the CA whose issuer domain name is
// issuer: one per name (a wildcard name and its base share one), with
// policy=wildcard when wildcard, and persistUntil when it is set.
func PersistRecords(domains []string, issuer, accountURI string, wildcard bool, persistUntil time.Time) []PersistRecord {
	var (
		out   []PersistRecord
		index = map[string]int{}
	)
	for _, d := range domains {
		base := strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(d), "*."), ".")
		i, ok := index[base]
		if !ok {
			i = len(out)
			index[base] = i
			out = append(out, PersistRecord{Name: persistLabel + base + ".", Value: persistValue(issuer, accountURI, wildcard, persistUntil), Wildcard: wildcard})
		}
		out[i].Domains = append(out[i].Domains, d)
	}
	return out
}

func persistValue(issuer, accountURI string, wildcard bool, persistUntil time.Time) string {
	v := issuer + "; accounturi=" + accountURI
	if wildcard {
		v += "; policy=wildcard"
	}
	if !persistUntil.IsZero() {
		v += "; persistUntil=" + strconv.FormatInt(persistUntil.Unix(), 10)
	}
	return v
}

// issueValue is a parsed dns-persist-01 TXT value.
type issueValue struct {
	issuer, accountURI, policy string
	persistUntil               time.Time
	hasPersistUntil            bool
}

func parseIssueValue(s string) (issueValue, error) {
	parts := strings.Split(s, ";")
	v := issueValue{issuer: strings.TrimSuffix(strings.ToLower(strings.TrimSpace(parts[0])), ".")}
	if v.issuer == "" {
		return v, errors.New("no issuer domain name")
	}
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			return v, fmt.Errorf("parameter %q without =", p)
		}
		k, val = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(val)
		switch k {
		case "accounturi":
			v.accountURI = val
		case "policy":
			v.policy = strings.ToLower(val)
		case "persistuntil":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return v, fmt.Errorf("persistUntil %q is not a Unix time", val)
			}
			v.persistUntil, v.hasPersistUntil = time.Unix(n, 0), true
		}
	}
	return v, nil
}

// Lookup asks one resolver for TXT records.
type Lookup func(ctx context.Context, resolver, name string) ([]string, error)

// errNoTXT is a lookup's answer when the name has no TXT record.
var errNoTXT = &net.DNSError{Err: "no TXT record", IsNotFound: true}

// lookupTXT asks resolver ("host:port", "host", or "" for the system's)
// for the TXT values of name, each one's strings joined.
func lookupTXT(ctx context.Context, resolver, name string) ([]string, error) {
	if resolver == "" {
		return net.DefaultResolver.LookupTXT(ctx, name)
	}
	addr := resolver
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "53")
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	m.RecursionDesired = true
	c := &dns.Client{Timeout: 5 * time.Second}
	in, _, err := c.ExchangeContext(ctx, m, addr)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, addr)
	}
	if err != nil {
		return nil, err
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, errNoTXT
	default:
		return nil, fmt.Errorf("answer %s", dns.RcodeToString[in.Rcode])
	}
	var out []string
	for _, rr := range in.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	if len(out) == 0 {
		return nil, errNoTXT
	}
	return out, nil
}

// CheckPersistRecords asks every resolver (none: the system's) for each
// record and returns ErrPersistRecord, with one line per problem, unless
// every resolver has a TXT value that the CA will accept for it: the same
// issuer domain name and account URI, policy=wildcard where it is needed
// and the same persistUntil, not passed at now. lookup nil asks DNS.
func CheckPersistRecords(ctx context.Context, records []PersistRecord, resolvers []string, now time.Time, lookup Lookup) error {
	if lookup == nil {
		lookup = lookupTXT
	}
	if len(resolvers) == 0 {
		resolvers = []string{""}
	}
	var problems []string
	for _, rec := range records {
		want, _ := parseIssueValue(rec.Value)
		needWildcard := slices.ContainsFunc(rec.Domains, func(d string) bool { return strings.HasPrefix(d, "*.") })
		for _, res := range resolvers {
			where := "resolver " + res
			if res == "" {
				where = "the system's resolver"
			}
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			txts, err := lookup(lctx, res, rec.Name)
			cancel()
			var dnsErr *net.DNSError
			switch {
			case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
				problems = append(problems, fmt.Sprintf("%s: no TXT record at %s", where, rec.Name))
				continue
			case err != nil:
				problems = append(problems, fmt.Sprintf("%s: looking up %s: %v", where, rec.Name, err))
				continue
			case len(txts) == 0:
				problems = append(problems, fmt.Sprintf("%s: no TXT record at %s", where, rec.Name))
				continue
			}
			var why []string
			found := false
			for _, t := range txts {
				got, err := parseIssueValue(t)
				if err != nil {
					why = append(why, fmt.Sprintf("%q does not parse (%v)", t, err))
					continue
				}
				var miss []string
				if got.issuer != want.issuer {
					miss = append(miss, fmt.Sprintf("issuer domain name is %q, the CA's is %q", got.issuer, want.issuer))
				}
				if got.accountURI != want.accountURI {
					miss = append(miss, fmt.Sprintf("accounturi is %q, this account's is %q", got.accountURI, want.accountURI))
				}
				if needWildcard && got.policy != "wildcard" {
					miss = append(miss, "policy=wildcard is missing (needed for "+strings.Join(rec.Domains, ", ")+")")
				}
				switch {
				case got.hasPersistUntil && !now.Before(got.persistUntil):
					miss = append(miss, "persistUntil "+got.persistUntil.UTC().Format(time.RFC3339)+" has passed")
				case got.hasPersistUntil != want.hasPersistUntil || got.hasPersistUntil && !got.persistUntil.Equal(want.persistUntil):
					miss = append(miss, fmt.Sprintf("persistUntil differs from the configured persist_until (%s)", describeUntil(want)))
				}
				if len(miss) == 0 {
					found = true
					break
				}
				why = append(why, fmt.Sprintf("%q: %s", t, strings.Join(miss, "; ")))
			}
			if !found {
				problems = append(problems, fmt.Sprintf("%s: %s has no matching value: %s", where, rec.Name, strings.Join(why, " | ")))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrPersistRecord, strings.Join(problems, "\n  "))
	}
	return nil
}

func describeUntil(v issueValue) string {
	if !v.hasPersistUntil {
		return "none"
	}
	return strconv.FormatInt(v.persistUntil.Unix(), 10)
}

// checkPersist computes req's dns-persist-01 records, hands them to
// req.Challenge.Records and checks them on the resolvers; offered are the
// CA's issuer domain names.
func (c *Client) checkPersist(ctx context.Context, req Request, offered []string) error {
	ch := req.Challenge
	if !ch.PersistUntil.IsZero() && !time.Now().Before(ch.PersistUntil) {
		return fmt.Errorf("%w: persist_until %s has passed: the CA no longer accepts the record; set a later one (or none) and update the records", ErrConfig, ch.PersistUntil.UTC().Format(time.RFC3339))
	}
	issuer, err := issuerFor(ch.IssuerDomainName, offered)
	if err != nil {
		return err
	}
	uri := c.AccountURI()
	if uri == "" {
		return errors.New("dns-persist-01: the stored ACME account has no URI")
	}
	records := PersistRecords(req.Domains, issuer, uri, ch.Wildcard, ch.PersistUntil)
	if ch.Records != nil {
		ch.Records(records)
	}
	return CheckPersistRecords(ctx, records, ch.Resolvers, time.Now(), nil)
}

// setPersist configures lego's dns-persist-01 solver. The records are
// checked already; lego finds them and only checks propagation.
func (c *Client) setPersist(ctx context.Context, cl *lego.Client, req Request) error {
	ch := req.Challenge
	issuer, err := issuerFor(ch.IssuerDomainName, cl.GetServerMetadata().CaaIdentities)
	if err != nil {
		return err
	}
	popts := dnspersist01.NewOptions()
	popts.RecursiveNameservers = resolvers(ch.Resolvers)
	dnspersist01.SetDefaultClient(dnspersist01.NewClient(popts))
	// lego's only dns-persist-01 provider asks on stdin when a record is
	// missing; never wait for a person: the check would time out.
	timeout := ch.PropagationTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	for k, v := range map[string]string{
		"DNSPERSIST_MANUAL_MODE":                "wait",
		"DNSPERSIST_MANUAL_WAIT":                "0",
		"DNSPERSIST_MANUAL_POLLING_INTERVAL":    "1",
		"DNSPERSIST_MANUAL_PROPAGATION_TIMEOUT": strconv.Itoa(max(1, int(timeout/time.Second))),
	} {
		os.Setenv(k, v)
	}
	opts := []dnspersist01.ChallengeOption{
		dnspersist01.WithIssuerDomainName(issuer),
		dnspersist01.CondOptions(!ch.PersistUntil.IsZero(), dnspersist01.WithPersistUntil(ch.PersistUntil)),
		dnspersist01.CondOptions(len(ch.Resolvers) == 0, dnspersist01.DisableRecursiveNSsPropagationRequirement()),
		dnspersist01.CondOptions(ch.DisablePropagationCheck, dnspersist01.DisableAuthoritativeNssPropagationRequirement()),
		dnspersist01.WrapPreCheck(func(pctx context.Context, domain, fqdn string, m dnspersist01.RecordMatcher, check dnspersist01.PreCheckFunc) (bool, error) {
			if err := ctx.Err(); err != nil {
				return true, err
			}
			return check(pctx, fqdn, m)
		}),
	}
	if err := cl.Challenge.SetDNSPersist01(opts...); err != nil {
		return fmt.Errorf("dns-persist-01: %w", err)
	}
	return nil
}
