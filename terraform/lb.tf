# The one origin. Claude Code calls fixed paths under one base URL; the URL map
# sends each path to its function's serverless NEG. Its path rules are
# var.gateway_paths, generated from common/paths.py (the table the local
# router uses), so the cloud front door and `make run` cannot disagree.
#
# internal = true (default): regional internal Application Load Balancer on the
# VPC, certificate from Certificate Manager (DNS authorization).
# internal = false: global external Application Load Balancer, Cloud Armor
# allowlist of var.allowed_cidrs, Google-managed certificate.
# var.certificate_source picks the certificate instead: Google-managed (renewed by
# Google, each renewal re-pins every client), self-managed (uploaded from files,
# rotated when you choose) or an existing one (var.certificate_id).

resource "google_compute_region_network_endpoint_group" "gateway" {
  for_each = local.functions

  project               = var.project_id
  name                  = "${var.name_prefix}-${each.key}"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    # A gen2 function is served by the Cloud Run service of the same name.
    service = google_cloudfunctions2_function.gateway[each.key].service_config[0].service
  }
}

# --- internal (default) ---------------------------------------------------------

resource "google_compute_region_backend_service" "internal" {
  for_each = var.internal ? local.functions : toset([])

  project               = var.project_id
  name                  = "${var.name_prefix}-${each.key}"
  region                = var.region
  protocol              = "HTTPS"
  load_balancing_scheme = "INTERNAL_MANAGED"

  backend {
    group           = google_compute_region_network_endpoint_group.gateway[each.key].id
    balancing_mode  = "UTILIZATION"
    capacity_scaler = 1.0
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_region_url_map" "internal" {
  count = var.internal ? 1 : 0

  project         = var.project_id
  name            = var.name_prefix
  region          = var.region
  default_service = google_compute_region_backend_service.internal[var.default_function].id

  host_rule {
    hosts        = ["*"]
    path_matcher = "gateway"
  }

  path_matcher {
    name            = "gateway"
    default_service = google_compute_region_backend_service.internal[var.default_function].id

    dynamic "path_rule" {
      for_each = var.gateway_paths
      content {
        paths   = path_rule.value
        service = google_compute_region_backend_service.internal[path_rule.key].id
      }
    }
  }
}

resource "google_certificate_manager_dns_authorization" "internal" {
  count = var.internal && var.certificate_source == "google-managed" ? 1 : 0

  project  = var.project_id
  name     = "${var.name_prefix}-dns-auth"
  location = var.region
  domain   = var.domain
  type     = "PER_PROJECT_RECORD"

  depends_on = [google_project_service.apis]
}

resource "google_certificate_manager_certificate" "internal" {
  count = var.internal && var.certificate_source == "google-managed" ? 1 : 0

  project  = var.project_id
  name     = var.name_prefix
  location = var.region
  labels   = var.labels

  managed {
    domains            = [var.domain]
    dns_authorizations = [google_certificate_manager_dns_authorization.internal[0].id]
  }
}

resource "google_compute_region_ssl_policy" "internal" {
  count = var.internal ? 1 : 0

  project         = var.project_id
  name            = var.name_prefix
  region          = var.region
  profile         = "RESTRICTED"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_region_target_https_proxy" "internal" {
  count = var.internal ? 1 : 0

  project                          = var.project_id
  name                             = var.name_prefix
  region                           = var.region
  url_map                          = google_compute_region_url_map.internal[0].id
  ssl_policy                       = google_compute_region_ssl_policy.internal[0].id
  certificate_manager_certificates = [local.certificate_manager_certificate]
}

resource "google_compute_address" "internal" {
  count = var.internal ? 1 : 0

  project      = var.project_id
  name         = var.name_prefix
  region       = var.region
  subnetwork   = google_compute_subnetwork.gateway.id
  address_type = "INTERNAL"
}

resource "google_compute_forwarding_rule" "internal" {
  count = var.internal ? 1 : 0

  project               = var.project_id
  name                  = var.name_prefix
  region                = var.region
  load_balancing_scheme = "INTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "443"
  ip_address            = google_compute_address.internal[0].id
  target                = google_compute_region_target_https_proxy.internal[0].id
  network               = google_compute_network.gateway.id
  subnetwork            = google_compute_subnetwork.gateway.id
  allow_global_access   = true # developers' VPN may land in another region

  depends_on = [google_compute_subnetwork.proxy_only]
}

# --- external (internal = false) ------------------------------------------------

resource "google_compute_security_policy" "external" {
  count = var.internal ? 0 : 1

  project     = var.project_id
  name        = var.name_prefix
  description = "Admit only the allowlisted ranges to the Claude apps gateway."
  type        = "CLOUD_ARMOR"

  rule {
    action      = "deny(403)"
    priority    = 900
    description = "Log4j probes (CVE-2021-44228)"
    match {
      expr {
        expression = "evaluatePreconfiguredWaf('cve-canary')"
      }
    }
  }

  rule {
    action      = "allow"
    priority    = 1000
    description = "Allowlisted source ranges"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = var.allowed_cidrs
      }
    }
  }

  rule {
    action      = "deny(403)"
    priority    = 2147483647
    description = "Everyone else"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }
}

resource "google_compute_backend_service" "external" {
  for_each = var.internal ? toset([]) : local.functions

  project               = var.project_id
  name                  = "${var.name_prefix}-${each.key}"
  protocol              = "HTTPS"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  security_policy       = google_compute_security_policy.external[0].id

  backend {
    group = google_compute_region_network_endpoint_group.gateway[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_url_map" "external" {
  count = var.internal ? 0 : 1

  project         = var.project_id
  name            = var.name_prefix
  default_service = google_compute_backend_service.external[var.default_function].id

  host_rule {
    hosts        = ["*"]
    path_matcher = "gateway"
  }

  path_matcher {
    name            = "gateway"
    default_service = google_compute_backend_service.external[var.default_function].id

    dynamic "path_rule" {
      for_each = var.gateway_paths
      content {
        paths   = path_rule.value
        service = google_compute_backend_service.external[path_rule.key].id
      }
    }
  }
}

resource "google_compute_managed_ssl_certificate" "external" {
  count = !var.internal && var.certificate_source == "google-managed" ? 1 : 0

  project = var.project_id
  name    = var.name_prefix

  managed {
    domains = [var.domain]
  }
}

resource "google_compute_ssl_policy" "external" {
  count = var.internal ? 0 : 1

  project         = var.project_id
  name            = var.name_prefix
  profile         = "RESTRICTED"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "external" {
  count = var.internal ? 0 : 1

  project    = var.project_id
  name       = var.name_prefix
  url_map    = google_compute_url_map.external[0].id
  ssl_policy = google_compute_ssl_policy.external[0].id
  # A compute SSL certificate (Google-managed, or an existing one) or a Certificate Manager
  # map (self-managed, or an existing Certificate Manager certificate); never both.
  ssl_certificates = local.external_uses_map ? null : [
    var.certificate_source == "google-managed" ? google_compute_managed_ssl_certificate.external[0].id : var.certificate_id
  ]
  certificate_map = local.external_uses_map ? "//certificatemanager.googleapis.com/${google_certificate_manager_certificate_map.external[0].id}" : null
}

resource "google_compute_global_address" "external" {
  count = var.internal ? 0 : 1

  project      = var.project_id
  name         = var.name_prefix
  address_type = "EXTERNAL"
  ip_version   = "IPV4" # gatewayInternalNetworks holds IPv4 blocks only
  address      = var.external_ip_address != "" ? var.external_ip_address : null
}

resource "google_compute_global_forwarding_rule" "external" {
  count = var.internal ? 0 : 1

  project               = var.project_id
  name                  = var.name_prefix
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "443"
  ip_address            = google_compute_global_address.external[0].id
  target                = google_compute_target_https_proxy.external[0].id
}

# --- operator-supplied certificate (certificate_source = "self-managed" / "existing") ----

locals {
  # Certificate Manager certificate for an existing id given in that form.
  existing_is_certificate_manager = var.certificate_source == "existing" && can(regex("/certificates/", var.certificate_id))
  external_uses_map               = !var.internal && (var.certificate_source == "self-managed" || local.existing_is_certificate_manager)
  certificate_manager_certificate = (
    var.certificate_source == "self-managed" ? google_certificate_manager_certificate.operator[0].id :
    var.certificate_source == "existing" ? var.certificate_id :
    var.internal ? google_certificate_manager_certificate.internal[0].id : null
  )
  certificate_pem = var.certificate_source == "self-managed" ? file(var.certificate_file) : ""
}

# The operator's own certificate, uploaded from files. Its name carries a hash of the
# certificate, so a new one is created (and attached) before the old one is deleted.
# The private key is a write-only argument: sent to the API, never kept in the state.
resource "google_certificate_manager_certificate" "operator" {
  count = var.certificate_source == "self-managed" ? 1 : 0

  project     = var.project_id
  name        = "${var.name_prefix}-${substr(sha256(local.certificate_pem), 0, 10)}"
  location    = var.internal ? var.region : "global"
  description = "Operator-supplied certificate for ${var.domain}; rotating it makes every developer /login again."
  labels      = var.labels

  self_managed {
    pem_certificate            = local.certificate_pem
    pem_private_key_wo         = file(var.private_key_file)
    pem_private_key_wo_version = sha256(local.certificate_pem)
  }

  lifecycle {
    create_before_destroy = true
  }
}

# The global external load balancer takes Certificate Manager certificates through a map.
resource "google_certificate_manager_certificate_map" "external" {
  count = local.external_uses_map ? 1 : 0

  project     = var.project_id
  name        = var.name_prefix
  description = "Certificates of the Claude apps gateway (${var.domain})."
  labels      = var.labels
}

resource "google_certificate_manager_certificate_map_entry" "external" {
  count = local.external_uses_map ? 1 : 0

  project      = var.project_id
  name         = var.name_prefix
  map          = google_certificate_manager_certificate_map.external[0].name
  hostname     = var.domain
  certificates = [local.certificate_manager_certificate]
  labels       = var.labels
}
