// Package packed is the stored form of the built-in kinds' resolved OpenAPI schemas: what
// schemas/gen writes once per Kubernetes release and package schemas decodes on every render.
package packed

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"

	"k8s.io/kube-openapi/pkg/validation/spec"
)

// The form is binary and read without reflection: spec.Schema's own JSON decoder goes through
// a generic JSON library, reflection over its field names and a pass sorting extensions from
// other keys for every one of the thousands of sub-schemas a Deployment has, and a one-shot
// render paid that on every run.
//
//	blob   = magic, uvarint count, count × (uvarint length, bytes)  // string table
//	         schema
//	schema = uvarint flags, then per set flag in bit order its payload:
//	         type: uvarint n, n × str; format: str; nullable: -; default: value;
//	         enum: uvarint n, n × value; required: uvarint n, n × str; items: schema;
//	         additionalProperties: schema (allowed); additionalProperties bool: 1 byte;
//	         properties: uvarint n, n × (str, schema); allOf, oneOf, anyOf: uvarint n, n × schema;
//	         extensions: uvarint n, n × (str, value)
//	value  = 1 byte kind, then: float64 bits (8 bytes, little endian) | str | uvarint n, n × value
//	         | uvarint n, n × (str, value)
//	str    = uvarint index into the string table
const magic = "KPS1"

const (
	hasType = 1 << iota
	hasFormat
	isNullable
	hasDefault
	hasEnum
	hasRequired
	hasItems
	hasAdditionalProperties
	hasAdditionalPropertiesBool
	hasProperties
	hasAllOf
	hasOneOf
	hasAnyOf
	hasExtensions
)

const (
	valueNull = iota
	valueFalse
	valueTrue
	valueNumber
	valueString
	valueArray
	valueObject
)

// Encode packs s, failing on any part the form cannot hold, so that nothing is lost silently.
// The bytes depend only on s: map keys are written sorted.
func Encode(s *spec.Schema) ([]byte, error) {
	e := &encoder{index: map[string]uint64{}}
	if err := e.schema(s); err != nil {
		return nil, err
	}
	out := binary.AppendUvarint([]byte(magic), uint64(len(e.strings)))
	for _, str := range e.strings {
		out = binary.AppendUvarint(out, uint64(len(str)))
		out = append(out, str...)
	}
	return append(out, e.body...), nil
}

type encoder struct {
	strings []string
	index   map[string]uint64
	body    []byte
}

func (e *encoder) uvarint(n int) { e.body = binary.AppendUvarint(e.body, uint64(n)) }

func (e *encoder) str(s string) {
	i, ok := e.index[s]
	if !ok {
		i = uint64(len(e.strings))
		e.index[s] = i
		e.strings = append(e.strings, s)
	}
	e.body = binary.AppendUvarint(e.body, i)
}

func (e *encoder) schema(s *spec.Schema) error {
	rest := *s // what remains once the supported parts are taken out must be empty
	rest.Type, rest.Format, rest.Nullable, rest.Default, rest.Enum, rest.Required = nil, "", false, nil, nil, nil
	rest.Items, rest.AdditionalProperties, rest.Properties, rest.Extensions = nil, nil, nil, nil
	rest.AllOf, rest.OneOf, rest.AnyOf = nil, nil, nil
	if !reflect.DeepEqual(rest, spec.Schema{}) {
		b, _ := json.Marshal(&rest)
		return fmt.Errorf("schema parts the packed form cannot hold: %s", b)
	}
	if s.Items != nil && (s.Items.Schema == nil || len(s.Items.Schemas) > 0) {
		return errors.New("items: only a single schema is supported")
	}
	if ap := s.AdditionalProperties; ap != nil && ap.Schema != nil && !ap.Allows {
		return errors.New("additionalProperties: a schema that allows nothing is not supported")
	}

	var flags int
	set := func(bit int, on bool) {
		if on {
			flags |= bit
		}
	}
	set(hasType, s.Type != nil)
	set(hasFormat, s.Format != "")
	set(isNullable, s.Nullable)
	set(hasDefault, s.Default != nil)
	set(hasEnum, s.Enum != nil)
	set(hasRequired, s.Required != nil)
	set(hasItems, s.Items != nil)
	set(hasAdditionalProperties, s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil)
	set(hasAdditionalPropertiesBool, s.AdditionalProperties != nil && s.AdditionalProperties.Schema == nil)
	set(hasProperties, s.Properties != nil)
	set(hasAllOf, s.AllOf != nil)
	set(hasOneOf, s.OneOf != nil)
	set(hasAnyOf, s.AnyOf != nil)
	set(hasExtensions, s.Extensions != nil)
	e.uvarint(flags)

	if s.Type != nil {
		e.strs(s.Type)
	}
	if s.Format != "" {
		e.str(s.Format)
	}
	if s.Default != nil {
		if err := e.value(s.Default); err != nil {
			return fmt.Errorf("default: %w", err)
		}
	}
	if s.Enum != nil {
		e.uvarint(len(s.Enum))
		for _, v := range s.Enum {
			if err := e.value(v); err != nil {
				return fmt.Errorf("enum: %w", err)
			}
		}
	}
	if s.Required != nil {
		e.strs(s.Required)
	}
	if s.Items != nil {
		if err := e.schema(s.Items.Schema); err != nil {
			return fmt.Errorf("items: %w", err)
		}
	}
	if ap := s.AdditionalProperties; ap != nil {
		if ap.Schema != nil {
			if err := e.schema(ap.Schema); err != nil {
				return fmt.Errorf("additionalProperties: %w", err)
			}
		} else if ap.Allows {
			e.body = append(e.body, 1)
		} else {
			e.body = append(e.body, 0)
		}
	}
	if s.Properties != nil {
		e.uvarint(len(s.Properties))
		for _, name := range sortedKeys(s.Properties) {
			e.str(name)
			prop := s.Properties[name]
			if err := e.schema(&prop); err != nil {
				return fmt.Errorf("properties.%s: %w", name, err)
			}
		}
	}
	for _, list := range []struct {
		name string
		subs []spec.Schema
	}{{"allOf", s.AllOf}, {"oneOf", s.OneOf}, {"anyOf", s.AnyOf}} {
		if list.subs == nil {
			continue
		}
		e.uvarint(len(list.subs))
		for i := range list.subs {
			if err := e.schema(&list.subs[i]); err != nil {
				return fmt.Errorf("%s[%d]: %w", list.name, i, err)
			}
		}
	}
	if s.Extensions != nil {
		e.uvarint(len(s.Extensions))
		for _, k := range sortedKeys(s.Extensions) {
			e.str(k)
			if err := e.value(s.Extensions[k]); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
	}
	return nil
}

func (e *encoder) strs(ss []string) {
	e.uvarint(len(ss))
	for _, s := range ss {
		e.str(s)
	}
}

// value writes a value as JSON decodes into an interface: nil, bool, float64, string, []any,
// map[string]any.
func (e *encoder) value(v any) error {
	switch v := v.(type) {
	case nil:
		e.body = append(e.body, valueNull)
	case bool:
		if v {
			e.body = append(e.body, valueTrue)
		} else {
			e.body = append(e.body, valueFalse)
		}
	case float64:
		e.body = append(e.body, valueNumber)
		e.body = binary.LittleEndian.AppendUint64(e.body, math.Float64bits(v))
	case string:
		e.body = append(e.body, valueString)
		e.str(v)
	case []any:
		e.body = append(e.body, valueArray)
		e.uvarint(len(v))
		for _, item := range v {
			if err := e.value(item); err != nil {
				return err
			}
		}
	case map[string]any:
		e.body = append(e.body, valueObject)
		e.uvarint(len(v))
		for _, k := range sortedKeys(v) {
			e.str(k)
			if err := e.value(v[k]); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("value of type %T is not one JSON decodes to", v)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ErrCorrupt is returned by Decode for bytes Encode did not write.
var ErrCorrupt = errors.New("packed schema is corrupt")

// Decode returns the schema Encode packed, equal (reflect.DeepEqual) to what it was given.
func Decode(b []byte) (s *spec.Schema, err error) {
	if len(b) < len(magic) || string(b[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: no %q header", ErrCorrupt, magic)
	}
	d := &decoder{buf: b[len(magic):]}
	defer func() {
		// Reads past the end panic (index out of range) rather than checking every byte.
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	// One copy of the bytes as a string: the table's entries, and so every string of the
	// schema, are slices of it.
	whole := string(d.buf)
	d.strings = make([]string, d.uvarint())
	for i := range d.strings {
		l := d.uvarint()
		d.strings[i] = whole[d.pos : d.pos+l]
		d.pos += l
	}
	s = new(spec.Schema)
	d.schema(s)
	if d.pos != len(d.buf) {
		return nil, fmt.Errorf("%w: %d bytes after the schema", ErrCorrupt, len(d.buf)-d.pos)
	}
	return s, nil
}

type decoder struct {
	buf     []byte
	pos     int
	strings []string
}

func (d *decoder) uvarint() int {
	v, n := binary.Uvarint(d.buf[d.pos:])
	if n <= 0 || v > math.MaxInt32 {
		panic("bad varint")
	}
	d.pos += n
	return int(v)
}

func (d *decoder) str() string { return d.strings[d.uvarint()] }

func (d *decoder) strs() []string {
	out := make([]string, d.uvarint())
	for i := range out {
		out[i] = d.str()
	}
	return out
}

func (d *decoder) schema(s *spec.Schema) {
	flags := d.uvarint()
	if flags&hasType != 0 {
		s.Type = d.strs()
	}
	if flags&hasFormat != 0 {
		s.Format = d.str()
	}
	s.Nullable = flags&isNullable != 0
	if flags&hasDefault != 0 {
		s.Default = d.value()
	}
	if flags&hasEnum != 0 {
		s.Enum = make([]any, d.uvarint())
		for i := range s.Enum {
			s.Enum[i] = d.value()
		}
	}
	if flags&hasRequired != 0 {
		s.Required = d.strs()
	}
	if flags&hasItems != 0 {
		sub := new(spec.Schema)
		d.schema(sub)
		s.Items = &spec.SchemaOrArray{Schema: sub}
	}
	if flags&hasAdditionalProperties != 0 {
		sub := new(spec.Schema)
		d.schema(sub)
		s.AdditionalProperties = &spec.SchemaOrBool{Allows: true, Schema: sub}
	}
	if flags&hasAdditionalPropertiesBool != 0 {
		allows := d.buf[d.pos] == 1
		d.pos++
		s.AdditionalProperties = &spec.SchemaOrBool{Allows: allows}
	}
	if flags&hasProperties != 0 {
		n := d.uvarint()
		s.Properties = make(map[string]spec.Schema, n)
		for range n {
			name := d.str()
			var sub spec.Schema
			d.schema(&sub)
			s.Properties[name] = sub
		}
	}
	if flags&hasAllOf != 0 {
		s.AllOf = d.schemas()
	}
	if flags&hasOneOf != 0 {
		s.OneOf = d.schemas()
	}
	if flags&hasAnyOf != 0 {
		s.AnyOf = d.schemas()
	}
	if flags&hasExtensions != 0 {
		n := d.uvarint()
		s.Extensions = make(spec.Extensions, n)
		for range n {
			k := d.str()
			s.Extensions[k] = d.value()
		}
	}
}

func (d *decoder) schemas() []spec.Schema {
	out := make([]spec.Schema, d.uvarint())
	for i := range out {
		d.schema(&out[i])
	}
	return out
}

func (d *decoder) value() any {
	kind := d.buf[d.pos]
	d.pos++
	switch kind {
	case valueNull:
		return nil
	case valueFalse:
		return false
	case valueTrue:
		return true
	case valueNumber:
		v := math.Float64frombits(binary.LittleEndian.Uint64(d.buf[d.pos:]))
		d.pos += 8
		return v
	case valueString:
		return d.str()
	case valueArray:
		out := make([]any, d.uvarint())
		for i := range out {
			out[i] = d.value()
		}
		return out
	case valueObject:
		n := d.uvarint()
		out := make(map[string]any, n)
		for range n {
			k := d.str()
			out[k] = d.value()
		}
		return out
	}
	panic(fmt.Sprintf("unknown value kind %d", kind))
}

// KindsFile is the file of a snapshot that holds the packed schema of every kind.
const KindsFile = "kinds.kpa"

// KindKey names kind's schema in KindsFile: the group-version's components file (e.g.
// apps_v1.json.gz) without its extension, a dot and the kind.
func KindKey(gvFile, kind string) string {
	return strings.TrimSuffix(gvFile, ".json.gz") + "." + kind
}

// ComponentKey names a schema component that is not a kind (such as ObjectMeta, which CRD
// schemas embed) in KindsFile: the components file without its extension, "#" and the name.
func ComponentKey(gvFile, component string) string {
	return strings.TrimSuffix(gvFile, ".json.gz") + "#" + component
}

// An archive holds many packed schemas under names, so that a render decodes only the few it
// needs: a header of names with offsets, then the schemas.
//
//	archive = archiveMagic, uvarint n, n × (uvarint length, name, uvarint offset, uvarint length),
//	          the schemas, at their offsets from the end of the header
const archiveMagic = "KPA1"

// EncodeArchive writes the schemas, by name, as an archive. The bytes depend only on schemas.
func EncodeArchive(schemas map[string][]byte) []byte {
	names := sortedKeys(schemas)
	out := binary.AppendUvarint([]byte(archiveMagic), uint64(len(names)))
	offset := 0
	for _, name := range names {
		out = binary.AppendUvarint(out, uint64(len(name)))
		out = append(out, name...)
		out = binary.AppendUvarint(out, uint64(offset))
		out = binary.AppendUvarint(out, uint64(len(schemas[name])))
		offset += len(schemas[name])
	}
	for _, name := range names {
		out = append(out, schemas[name]...)
	}
	return out
}

// Archive is a decoded archive header over the archive's bytes.
type Archive struct {
	entries map[string][]byte
}

// OpenArchive reads the header of an archive; the schemas stay encoded until Schema asks.
func OpenArchive(b []byte) (a *Archive, err error) {
	if len(b) < len(archiveMagic) || string(b[:len(archiveMagic)]) != archiveMagic {
		return nil, fmt.Errorf("%w: no %q header", ErrCorrupt, archiveMagic)
	}
	defer func() {
		if r := recover(); r != nil {
			a, err = nil, fmt.Errorf("%w: archive header: %v", ErrCorrupt, r)
		}
	}()
	d := &decoder{buf: b[len(archiveMagic):]}
	type span struct{ offset, length int }
	n := d.uvarint()
	spans := make(map[string]span, n)
	for range n {
		l := d.uvarint()
		name := string(d.buf[d.pos : d.pos+l])
		d.pos += l
		spans[name] = span{d.uvarint(), d.uvarint()}
	}
	body := d.buf[d.pos:]
	a = &Archive{entries: make(map[string][]byte, n)}
	for name, s := range spans {
		if s.offset+s.length > len(body) {
			return nil, fmt.Errorf("%w: schema %s ends past the archive", ErrCorrupt, name)
		}
		a.entries[name] = body[s.offset : s.offset+s.length]
	}
	return a, nil
}

// Schema decodes the schema stored under name; ok is false when there is none.
func (a *Archive) Schema(name string) (s *spec.Schema, ok bool, err error) {
	b, ok := a.entries[name]
	if !ok {
		return nil, false, nil
	}
	s, err = Decode(b)
	return s, true, err
}
