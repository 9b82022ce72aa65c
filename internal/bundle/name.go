package bundle

import (
	"errors"
	"fmt"
)

// MaxNameLength bounds certificate names; they become directory names.
const MaxNameLength = 200

// ValidName reports whether name can be used as a certificate name: it
// becomes a directory name on the management server and on every node, so
// it must not be empty, start with a dot, or hold anything but letters,
// digits, '.', '-', '_' (which also excludes '/', NUL and "..").
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("certificate name is empty")
	case len(name) > MaxNameLength:
		return fmt.Errorf("certificate name is %d bytes, longer than %d", len(name), MaxNameLength)
	case name[0] == '.' || name[0] == '-':
		return fmt.Errorf("certificate name %q must not start with %q", name, name[0])
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("certificate name %q holds %q: only letters, digits, '.', '-' and '_' are allowed", name, c)
		}
	}
	return nil
}
