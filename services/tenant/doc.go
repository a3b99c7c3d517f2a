// Package tenant implements abacus.tenant.v1.TenantService: a tenant reads
// its own limits and its usage of the current quota period.
//
// # Tenant
//
// Any API key of a tenant may call the service, whatever its scopes (the auth
// policy auth.MethodPolicy{AnyTenantKey: true}); the admin token may not, as
// the admin is not a tenant. Each
// handler's first line reads the authenticated tenant with
// tenancy.FromContext, and requests carry no tenant at all, so a caller only
// ever sees its own numbers. A missing tenant is tenancy.ErrNoTenant, returned
// wrapped for the server's error mapper: it means the handler was reached
// without the auth interceptor.
//
// # Usage
//
// The quota period is the calendar month in UTC (tenancy.MonthPeriod).
// quota_remaining is the hard quota minus the events accepted, never below
// zero, and 0 when the quota is unlimited (monthly_event_quota = 0 says so).
// The soft threshold is exceeded once the events accepted reach it. When the
// usage counter cannot be read the answer is UNAVAILABLE with reason
// [ReasonUsageUnavailable] and a RetryInfo: a retry may well succeed, and no
// made-up number is ever returned in its place.
package tenant
