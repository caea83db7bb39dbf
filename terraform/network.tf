# The gateway's VPC: Cloud SQL's private IP (private service access), the
# functions' egress to it (Serverless VPC Access), and the internal load
# balancer's address and proxy-only subnet.

resource "google_compute_network" "gateway" {
  project                 = var.project_id
  name                    = var.name_prefix
  auto_create_subnetworks = false

  depends_on = [google_project_service.apis]
}

resource "google_compute_subnetwork" "gateway" {
  project                  = var.project_id
  name                     = var.name_prefix
  region                   = var.region
  network                  = google_compute_network.gateway.id
  ip_cidr_range            = var.network_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Nothing in this VPC accepts connections: the serverless connector gets its
# own rules from Google, Cloud SQL sits in the peered producer network, and the
# load balancer's serverless backends need none. Deny the rest, logged.
resource "google_compute_firewall" "deny_ingress" {
  project   = var.project_id
  name      = "${var.name_prefix}-deny-ingress"
  network   = google_compute_network.gateway.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }

  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# An internal Application Load Balancer's Envoy proxies live in this subnet.
resource "google_compute_subnetwork" "proxy_only" {
  count = var.internal ? 1 : 0

  project       = var.project_id
  name          = "${var.name_prefix}-proxy-only"
  region        = var.region
  network       = google_compute_network.gateway.id
  ip_cidr_range = var.proxy_subnet_cidr
  purpose       = "REGIONAL_MANAGED_PROXY"
  role          = "ACTIVE"
}

# Private service access: a range Google peers into for Cloud SQL's private IP.
resource "google_compute_global_address" "private_services" {
  project       = var.project_id
  name          = "${var.name_prefix}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = google_compute_network.gateway.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.gateway.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

# The functions reach Cloud SQL's private IP through this connector; only
# private ranges go through it (Vertex AI and Secret Manager stay on Google's
# front ends).
resource "google_vpc_access_connector" "gateway" {
  project       = var.project_id
  name          = "${substr(var.name_prefix, 0, 18)}-vpc"
  region        = var.region
  network       = google_compute_network.gateway.name
  ip_cidr_range = var.connector_cidr
  min_instances = 2
  max_instances = 3

  depends_on = [google_project_service.apis]
}
