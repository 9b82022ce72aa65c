package yamlconf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// The checks below say what is wrong with a value without repeating it,
// except where noted, so that a reader can name the key and the value
// once.

// CheckDNSName checks the syntax of a host name: dot-separated labels of
// letters, digits and '-' (not first or last), at most 63 bytes each and
// 253 in all. With loose, as resolvers accept, labels may also hold '_'
// and the name may end with a dot.
func CheckDNSName(s string, loose bool) error {
	if loose {
		s = strings.TrimSuffix(s, ".")
	}
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > 253 {
		return errors.New("longer than 253 bytes")
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

// CheckDomain checks a certificate domain: a host name (not loose) or
// "*." followed by one. It returns the domain in lower case; the error
// names the domain.
func CheckDomain(d string) (string, error) {
	name := strings.TrimPrefix(d, "*.")
	if strings.Contains(name, "*") {
		return "", fmt.Errorf("bad domain %q: a wildcard is only allowed as the whole first label (*.example.com)", d)
	}
	if err := CheckDNSName(name, false); err != nil {
		return "", fmt.Errorf("bad domain %q: %v", d, err)
	}
	return strings.ToLower(d), nil
}

// ParseIP parses an IP address; an IPv6 zone must be an interface name
// or number (letters, digits, '.', '-', '_').
func ParseIP(s string) (netip.Addr, error) {
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

// CheckAddress checks a host's address: a host name (loose) or an IP
// address, IPv6 optionally in brackets. It returns it without brackets.
func CheckAddress(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty address")
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		inner := s[1 : len(s)-1]
		if a, err := ParseIP(inner); err != nil || !a.Is6() {
			return "", errors.New("brackets must hold an IPv6 address")
		}
		return inner, nil
	}
	if _, err := ParseIP(s); err == nil {
		return s, nil
	}
	if strings.Contains(s, ":") {
		return "", errors.New("not an IP address, and a host name has no ':' (give the port separately)")
	}
	if err := CheckDNSName(s, true); err != nil {
		return "", err
	}
	return s, nil
}

// ParsePort parses a decimal TCP port in 1..65535; the error names the
// value.
func ParsePort(s string) (int, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("bad port %q", s)
	}
	p, _ := strconv.Atoi(s)
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %d out of range 1..65535", p)
	}
	return p, nil
}

// CheckEndpoint checks host:port, the host as CheckAddress wants it
// (IPv6 in brackets: [::1]:443). With anyHost the host may be empty (a
// listen address on all interfaces). The error names the value.
func CheckEndpoint(s string, anyHost bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("bad address %q: want host:port ([::1]:443 for IPv6)", s)
	}
	if _, err := ParsePort(port); err != nil {
		return fmt.Errorf("bad address %q: %v", s, err)
	}
	if host == "" && anyHost {
		return nil
	}
	if _, err := CheckAddress(host); err != nil {
		return fmt.Errorf("bad address %q: %v", s, err)
	}
	return nil
}
