package admin

import (
	"errors"
	"fmt"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/reflect/protoreflect"

	adminv1 "github.com/abacus-analytics/abacus/gen/abacus/admin/v1"
	"github.com/abacus-analytics/abacus/internal/rpcerror"
	"github.com/abacus-analytics/abacus/store/postgres"
	"github.com/abacus-analytics/abacus/tenancy"
)

// Update-mask paths UpdateTenant accepts, relative to the Tenant message.
// pathLimits+"."+name addresses one TenantLimits field.
const (
	pathDisplayName = "display_name"
	pathState       = "state"
	pathLimits      = "limits"
)

// maxMaskPaths bounds the paths of one update mask. Every distinct path fits
// well within it; more can only be repetition.
const maxMaskPaths = 64

// limitsFieldPath is the request field the limit overrides come from, which
// names their violations.
const limitsFieldPath = "tenant.limits"

// updatablePaths lists the update-mask paths in the order error messages name
// them.
func updatablePaths() []string {
	paths := []string{pathDisplayName, pathState, pathLimits}
	fields := limitFields()
	for i := range fields.Len() {
		paths = append(paths, pathLimits+"."+string(fields.Get(i).Name()))
	}
	return paths
}

// tenantChange is what one UpdateTenant request changes, parsed from its mask
// and checked before the transaction starts.
type tenantChange struct {
	displayName *string
	state       *string
	// limitFields names the TenantLimits fields the request changes, each
	// once, in declaration order.
	limitFields []string
	// limits holds the request's values of limitFields; a field left nil
	// removes that override.
	limits tenancy.LimitOverrides
}

// parseTenantChange builds the change that the fields of in named by paths
// describe. Unknown paths, bad values for display_name or state, and limit
// values outside the contract's rules are INVALID_ARGUMENT; the limit
// problems are all reported at once.
func (s *Service) parseTenantChange(in *adminv1.Tenant, paths []string) (tenantChange, error) {
	allowed := "allowed paths: " + strings.Join(updatablePaths(), ", ")
	switch {
	case len(paths) == 0:
		return tenantChange{}, invalidArgument("update_mask", "must name at least one field; "+allowed)
	case len(paths) > maxMaskPaths:
		return tenantChange{}, invalidArgument("update_mask", fmt.Sprintf("names %d paths, at most %d are allowed", len(paths), maxMaskPaths))
	}
	fields := limitFields()
	var (
		c      tenantChange
		limits = map[protoreflect.Name]bool{}
	)
	for _, p := range paths {
		switch {
		case p == pathDisplayName:
			name := in.GetDisplayName()
			c.displayName = &name
		case p == pathState:
			state, ok := storeState(in.GetState())
			if !ok {
				return tenantChange{}, invalidArgument("tenant.state",
					"must be TENANT_STATE_ACTIVE or TENANT_STATE_SUSPENDED when update_mask names state")
			}
			c.state = &state
		case p == pathLimits:
			for i := range fields.Len() {
				limits[fields.Get(i).Name()] = true
			}
		case strings.HasPrefix(p, pathLimits+".") && fields.ByName(protoreflect.Name(p[len(pathLimits)+1:])) != nil:
			limits[protoreflect.Name(p[len(pathLimits)+1:])] = true
		default:
			return tenantChange{}, invalidArgument("update_mask",
				fmt.Sprintf("path %.64q cannot be updated; %s", p, allowed))
		}
	}
	if len(limits) == 0 {
		return c, nil
	}

	// The patch holds the request's values of the named fields only: fields
	// the mask leaves out are ignored, whatever the request says.
	patch := &adminv1.TenantLimits{}
	src, dst := in.GetLimits().ProtoReflect(), patch.ProtoReflect()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !limits[fd.Name()] {
			continue
		}
		c.limitFields = append(c.limitFields, string(fd.Name()))
		if src.Has(fd) {
			dst.Set(fd, src.Get(fd))
		}
	}
	// The server's validation interceptor applies the same rules to the whole
	// request; checking here keeps the handler safe on its own.
	if err := s.validator.Validate(patch); err != nil {
		var verr *protovalidate.ValidationError
		if !errors.As(err, &verr) {
			return tenantChange{}, fmt.Errorf("admin: update tenant: validate limits: %w", err)
		}
		bad := make([]*errdetails.BadRequest_FieldViolation, 0, len(verr.Violations))
		for _, v := range verr.Violations {
			// Worded like the validation interceptor's violations. A rule relating two
			// fields belongs to the message, and names the limits as a whole.
			field := limitsFieldPath
			if path := protovalidate.FieldPathString(v.Proto.GetField()); path != "" {
				field += "." + path
			}
			bad = append(bad, &errdetails.BadRequest_FieldViolation{
				Field:       field,
				Description: v.Proto.GetMessage(),
				Reason:      v.Proto.GetRuleId(),
			})
		}
		return tenantChange{}, rpcerror.InvalidArgument(bad...)
	}
	ov, bad := overridesFromProto(patch, limitsFieldPath)
	if len(bad) > 0 {
		return tenantChange{}, rpcerror.InvalidArgument(bad...)
	}
	c.limits = ov
	return c, nil
}

// apply makes the change to the stored tenant t. It returns an
// INVALID_ARGUMENT status, and changes nothing that will be written, when the
// resulting limits are not valid.
func (c tenantChange) apply(t *postgres.Tenant) error {
	if c.displayName != nil {
		t.DisplayName = *c.displayName
	}
	if c.state != nil {
		t.State = *c.state
	}
	if len(c.limitFields) == 0 {
		return nil
	}
	limits := t.Limits
	for _, name := range c.limitFields {
		copyLimit(&limits, c.limits, name)
	}
	if bad := effectiveLimitProblems(limits); len(bad) > 0 {
		return rpcerror.InvalidArgument(bad...)
	}
	t.Limits = limits
	return nil
}

// effectiveLimitProblems checks the limits a tenant with overrides o would
// have, with tenancy.Limits.Validate, and names every problem. When they are
// not valid, each override is checked on its own over the defaults, so a
// problem names the field that causes it; what only the combination breaks is
// reported against tenant.limits as a whole. Valid limits are accepted even
// when an override would not be valid alone: raising the raw retention beyond
// the default rollup retention takes a rollup retention override too.
func effectiveLimitProblems(o tenancy.LimitOverrides) []*errdetails.BadRequest_FieldViolation {
	defaults := tenancy.DefaultLimits()
	combined := o.Apply(defaults).Validate()
	if combined == nil {
		return nil
	}
	var bad []*errdetails.BadRequest_FieldViolation
	fields := limitFields()
	for i := range fields.Len() {
		name := string(fields.Get(i).Name())
		var one tenancy.LimitOverrides
		copyLimit(&one, o, name)
		if one == (tenancy.LimitOverrides{}) {
			continue
		}
		if err := one.Apply(defaults).Validate(); err != nil {
			bad = append(bad, rpcerror.Field(limitsFieldPath+"."+name, describeLimitsError(err)))
		}
	}
	if len(bad) == 0 {
		bad = append(bad, rpcerror.Field(limitsFieldPath, describeLimitsError(combined)))
	}
	return bad
}

// describeLimitsError words a tenancy.Limits.Validate error as a field
// violation: without the package prefix, its problems on one line.
func describeLimitsError(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "limits: ")
	}
	return strings.Join(lines, "; ")
}
