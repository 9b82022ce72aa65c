package inventory

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// checkHostName reports whether name can name a host or a group: it is
// used on command lines (--hosts a,b) and in logs, so it must be
// non-empty printable ASCII without spaces, ',', '@' or '#'.
func checkHostName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > 255:
		return fmt.Errorf("name is %d bytes, longer than 255", len(name))
	case name[0] == '-':
		return fmt.Errorf("name %q must not start with '-'", name)
	}
	for _, c := range name {
		if c <= ' ' || c > '~' || c == ',' || c == '@' || c == '#' {
			return fmt.Errorf("name %q holds %q: use printable ASCII without spaces, ',', '@' or '#'", name, c)
		}
	}
	return nil
}

// parseIP parses an IP address; an IPv6 zone must be an interface name
// or number (letters, digits, '.', '-', '_').
func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, err
	}
	for _, c := range a.Zone() {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return netip.Addr{}, fmt.Errorf("bad zone %q", a.Zone())
		}
	}
	return a, nil
}

// checkAddress validates a host's address (a DNS name or an IP address,
// IPv6 optionally in brackets) and returns it without brackets. The error
// says what is wrong, without repeating the address.
func checkAddress(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty address")
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		inner := s[1 : len(s)-1]
		if a, err := parseIP(inner); err != nil || !a.Is6() {
			return "", errors.New("brackets must hold an IPv6 address")
		}
		return inner, nil
	}
	if _, err := parseIP(s); err == nil {
		return s, nil
	}
	if strings.Contains(s, ":") {
		return "", errors.New("not an IP address, and a host name has no ':' (give the port separately)")
	}
	if err := checkDNSName(s, true); err != nil {
		return "", err
	}
	return s, nil
}

// checkDNSName checks the syntax of a host name. With loose, underscores
// and a final dot are accepted, as resolvers do.
func checkDNSName(s string, loose bool) error {
	if loose {
		s = strings.TrimSuffix(s, ".")
	}
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > 253 {
		return fmt.Errorf("longer than 253 bytes")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q longer than 63 bytes", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for _, c := range label {
			ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || loose && c == '_'
			if !ok {
				return fmt.Errorf("label %q holds %q", label, c)
			}
		}
	}
	return nil
}

// checkDomain validates a certificate domain: a DNS name or "*." followed
// by one. It returns the domain in lower case.
func checkDomain(d string) (string, error) {
	name := strings.TrimPrefix(d, "*.")
	if strings.Contains(name, "*") {
		return "", fmt.Errorf("bad domain %q: a wildcard is only allowed as the whole first label (*.example.com)", d)
	}
	if err := checkDNSName(name, false); err != nil {
		return "", fmt.Errorf("bad domain %q: %v", d, err)
	}
	return strings.ToLower(d), nil
}

// parsePort parses a decimal TCP port in 1..65535.
func parsePort(s string) (int, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("bad port %q", s)
	}
	p, _ := strconv.Atoi(s)
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %d out of range 1..65535", p)
	}
	return p, nil
}

// checkEndpoint validates host:port. With anyHost the host may be empty
// (a listen address on all interfaces).
func checkEndpoint(s string, anyHost bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("bad address %q: want host:port", s)
	}
	if _, err := parsePort(port); err != nil {
		return fmt.Errorf("bad address %q: %v", s, err)
	}
	if host == "" && anyHost {
		return nil
	}
	if _, err := checkAddress(host); err != nil {
		return fmt.Errorf("bad address %q: %v", s, err)
	}
	return nil
}
