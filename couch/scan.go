package couch

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// scanner reads one JSON document in place, for the replies couchwatch parses hundreds
// of times a second: it validates as it goes (the same grammar as encoding/json) but
// builds nothing the caller does not ask for, so a 5 KB /_system reply costs a walk
// over its bytes instead of a map of raw values. The caller drives it: object and
// array call back for each member, and each callback consumes exactly one value
// (with skip, str, int or a nested object or array).
type scanner struct {
	b     []byte
	i     int
	depth int
}

// maxDepth bounds nesting; CouchDB's replies nest three or four levels.
const maxDepth = 256

var errDepth = errors.New("JSON nested too deeply")

func (s *scanner) syntax(what string) error {
	if s.i >= len(s.b) {
		return fmt.Errorf("unexpected end of JSON input (%s)", what)
	}
	return fmt.Errorf("invalid character %q at offset %d (%s)", s.b[s.i], s.i, what)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// peek returns the first byte of the next value (after whitespace), 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// end checks that only whitespace follows the document.
func (s *scanner) end() error {
	s.ws()
	if s.i != len(s.b) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// object walks an object; member is called with each key (valid only during the call)
// and must consume the member's value.
func (s *scanner) object(member func(key []byte) error) error {
	if s.peek() != '{' {
		return s.syntax("want an object")
	}
	if s.depth++; s.depth > maxDepth {
		return errDepth
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.syntax("want an object key")
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		if s.peek() != ':' {
			return s.syntax("want ':'")
		}
		s.i++
		if err := member(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return nil
		default:
			return s.syntax("want ',' or '}'")
		}
	}
}

// array walks an array; elem must consume each element.
func (s *scanner) array(elem func() error) error {
	if s.peek() != '[' {
		return s.syntax("want an array")
	}
	if s.depth++; s.depth > maxDepth {
		return errDepth
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return nil
		default:
			return s.syntax("want ',' or ']'")
		}
	}
}

// str reads a string and returns its contents: a slice of the input when it has no
// escapes and is valid UTF-8 (valid until the input changes), else a decoded copy
// (invalid UTF-8 replaced, as encoding/json does).
func (s *scanner) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.syntax("want a string")
	}
	start := s.i
	s.i++
	escaped, high := false, false
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if !escaped && (!high || utf8.Valid(s.b[start+1:s.i-1])) {
				return s.b[start+1 : s.i-1], nil
			}
			// Rare: let encoding/json decode the escapes and replace invalid UTF-8.
			var out string
			if err := json.Unmarshal(s.b[start:s.i], &out); err != nil {
				return nil, err
			}
			return []byte(out), nil
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				s.i++
				return nil, s.syntax("in string escape")
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					s.i = len(s.b)
					return nil, s.syntax("in \\u escape")
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !isHex(h) {
						s.i += 2
						return nil, s.syntax("in \\u escape")
					}
				}
				s.i += 6
			default:
				s.i++
				return nil, s.syntax("in string escape")
			}
		case c < 0x20:
			return nil, s.syntax("control character in string")
		case c >= utf8.RuneSelf:
			high = true
			s.i++
		default:
			s.i++
		}
	}
	return nil, s.syntax("in string")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number reads a number and returns its text.
func (s *scanner) number() ([]byte, error) {
	s.ws()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.i < len(s.b) && '1' <= s.b[s.i] && s.b[s.i] <= '9':
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	default:
		return nil, s.syntax("in number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
			return nil, s.syntax("after decimal point")
		}
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
			return nil, s.syntax("in exponent")
		}
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	}
	return s.b[start:s.i], nil
}

// int reads a value that must be a number, as an int64 (see jsonInt).
func (s *scanner) int() (int64, error) {
	c := s.peek()
	if c != '-' && !isDigit(c) {
		// Consume it anyway so callers that ignore the error stay in step.
		if err := s.skip(); err != nil {
			return 0, err
		}
		return 0, errNotNumber
	}
	raw, err := s.number()
	if err != nil {
		return 0, err
	}
	if len(raw) <= 18 { // fast path: plain integers, as CouchDB sends them
		var n int64
		neg := raw[0] == '-'
		digits := raw
		if neg {
			digits = raw[1:]
		}
		plain := len(digits) > 0
		for _, d := range digits {
			if !isDigit(d) {
				plain = false
				break
			}
			n = n*10 + int64(d-'0')
		}
		if plain {
			if neg {
				n = -n
			}
			return n, nil
		}
	}
	return jsonInt(raw)
}

var errNotNumber = errors.New("not a number")

// literal consumes true, false or null.
func (s *scanner) literal() error {
	for _, lit := range []string{"true", "false", "null"} {
		if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
			s.i += len(lit)
			return nil
		}
	}
	return s.syntax("want a value")
}

// null consumes a null if one is next and reports whether it did.
func (s *scanner) null() bool {
	if s.peek() == 'n' && len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// skip consumes one value of any kind, validating it.
func (s *scanner) skip() error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || isDigit(c):
		_, err := s.number()
		return err
	default:
		return s.literal()
	}
}
