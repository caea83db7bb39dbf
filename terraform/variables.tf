variable "project_id" {
  description = "Google Cloud project that hosts the gateway (functions, Cloud SQL, secrets, load balancer)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the functions, Cloud SQL instance, network and (internal) load balancer."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1 or europe-west1."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name; the functions are named PREFIX-auth, PREFIX-messages and PREFIX-admin."
  type        = string
  default     = "claude-gateway"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name_prefix))
    error_message = "name_prefix must be 3-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "domain" {
  description = "Host name developers' Claude Code is given (the one origin), e.g. claude-gw.corp.example.com."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,}$", var.domain))
    error_message = "domain must be a lowercase DNS name such as claude-gw.corp.example.com (no scheme, no path)."
  }
}

variable "internal" {
  description = "true (default): a regional internal Application Load Balancer on the VPC; developers reach it over VPN or Interconnect, and Claude Code's /login accepts its private address as it is. false: a global external one behind a Cloud Armor IP allowlist; /login refuses a public gateway address unless managed settings carry gatewayInternalNetworks, a public block holding both the gateway address and the developer machine's own address, reached without an HTTP proxy (`python -m gateway onboard --terraform-output`, docs/deploy.md)."
  type        = bool
  default     = true
}

variable "allowed_cidrs" {
  description = "Source ranges the Cloud Armor policy admits when internal = false (your offices and VPN egress). Everything else gets 403."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_cidrs entries must be CIDR ranges such as 203.0.113.0/24."
  }

  validation {
    condition     = var.internal || length(var.allowed_cidrs) > 0
    error_message = "An external load balancer (internal = false) needs at least one allowed_cidrs entry; the gateway is never open to the whole internet."
  }

  validation {
    condition     = !contains(var.allowed_cidrs, "0.0.0.0/0") && !contains(var.allowed_cidrs, "::/0")
    error_message = "allowed_cidrs must not contain 0.0.0.0/0 or ::/0."
  }
}

variable "certificate_source" {
  description = <<-EOT
    Where the gateway's TLS certificate comes from. Claude Code pins the SHA-256 of the leaf
    certificate per host name when a developer first trusts the gateway; any other certificate
    fails every call until that developer runs /login again and trusts the new one.
    "google-managed" (default): Google issues and renews it (about every 2-3 months, on Google's
    schedule): each renewal signs the whole organisation out, unannounced.
    "self-managed": Terraform uploads certificate_file and private_key_file (a certificate you
    obtain, e.g. valid for a year) to Certificate Manager; it changes only when you replace the
    files and apply, so you announce and schedule every re-login (docs/deploy.md, rotation).
    "existing": serve certificate_id, a certificate you created and rotate outside Terraform.
  EOT
  type        = string
  default     = "google-managed"

  validation {
    condition     = contains(["google-managed", "self-managed", "existing"], var.certificate_source)
    error_message = "certificate_source must be google-managed, self-managed or existing."
  }
}

variable "certificate_id" {
  description = "certificate_source = \"existing\": the certificate to serve. A Certificate Manager certificate (projects/P/locations/L/certificates/NAME; L = var.region when internal, global when external), or, external only, a compute SSL certificate self link (projects/P/global/sslCertificates/NAME). Its rotation is yours: each new leaf certificate makes every developer /login again."
  type        = string
  default     = ""

  validation {
    condition     = (var.certificate_source == "existing") == (var.certificate_id != "")
    error_message = "Set certificate_id exactly when certificate_source = \"existing\" (it is ignored otherwise, so an id left over from an earlier setup is refused instead)."
  }

  validation {
    condition = var.certificate_id == "" || can(regex("^(//certificatemanager\\.googleapis\\.com/)?projects/[^/]+/locations/[^/]+/certificates/[^/]+$", var.certificate_id)) || (
      !var.internal && can(regex("^(https://www\\.googleapis\\.com/compute/v1/)?projects/[^/]+/global/sslCertificates/[^/]+$", var.certificate_id))
    )
    error_message = "certificate_id must be a Certificate Manager certificate (projects/P/locations/L/certificates/NAME) or, with internal = false, a compute SSL certificate (projects/P/global/sslCertificates/NAME)."
  }
}

variable "certificate_file" {
  description = "certificate_source = \"self-managed\": path of the PEM certificate chain (leaf first, then intermediates) for var.domain. Replacing it and applying rotates the certificate: announce it first, every developer must /login again (docs/deploy.md)."
  type        = string
  default     = ""

  validation {
    condition     = (var.certificate_source == "self-managed") == (var.certificate_file != "")
    error_message = "Set certificate_file (and private_key_file) exactly when certificate_source = \"self-managed\"."
  }
}

variable "private_key_file" {
  description = "certificate_source = \"self-managed\": path of the certificate's PEM private key. Sent as a write-only argument: it is not stored in the Terraform state."
  type        = string
  default     = ""

  validation {
    condition     = (var.certificate_source == "self-managed") == (var.private_key_file != "")
    error_message = "Set private_key_file (with certificate_file) exactly when certificate_source = \"self-managed\"."
  }
}

variable "external_ip_address" {
  description = "internal = false: a specific public IPv4 address for the load balancer, e.g. one from your own block brought to Google Cloud (BYOIP). Empty = Google assigns one. Claude Code's /login accepts a public gateway address only inside a gatewayInternalNetworks block that also holds the developer machine's own address (docs/deploy.md, external mode)."
  type        = string
  default     = ""

  validation {
    condition     = var.external_ip_address == "" || can(cidrhost("${var.external_ip_address}/32", 0))
    error_message = "external_ip_address must be an IPv4 address such as 198.51.100.10, or empty."
  }
}

variable "network_cidr" {
  description = "Primary range of the gateway's subnet (load balancer address and VPC egress)."
  type        = string
  default     = "10.40.0.0/24"

  validation {
    condition     = can(cidrhost(var.network_cidr, 0))
    error_message = "network_cidr must be a CIDR range such as 10.40.0.0/24."
  }
}

variable "proxy_subnet_cidr" {
  description = "Range of the proxy-only subnet an internal Application Load Balancer needs (at least /26)."
  type        = string
  default     = "10.40.1.0/24"

  validation {
    condition     = can(cidrhost(var.proxy_subnet_cidr, 0)) && tonumber(split("/", var.proxy_subnet_cidr)[1]) <= 26
    error_message = "proxy_subnet_cidr must be a CIDR range of /26 or larger."
  }
}

variable "connector_cidr" {
  description = "A /28 for the Serverless VPC Access connector the functions use to reach Cloud SQL's private IP."
  type        = string
  default     = "10.40.2.0/28"

  validation {
    condition     = can(cidrhost(var.connector_cidr, 0)) && endswith(var.connector_cidr, "/28")
    error_message = "connector_cidr must be a /28 range such as 10.40.2.0/28."
  }
}

variable "sql_tier" {
  description = "Cloud SQL machine tier. The default is small: the gateway does one or two short statements per request."
  type        = string
  default     = "db-custom-1-3840"

  validation {
    condition     = can(regex("^db-", var.sql_tier))
    error_message = "sql_tier must be a Cloud SQL tier such as db-custom-1-3840 or db-custom-2-7680."
  }
}

variable "sql_database_version" {
  description = "Cloud SQL for PostgreSQL version (the migrations need PostgreSQL 15 or later; the tests run on 18)."
  type        = string
  default     = "POSTGRES_18"

  validation {
    condition     = contains(["POSTGRES_15", "POSTGRES_16", "POSTGRES_17", "POSTGRES_18"], var.sql_database_version)
    error_message = "sql_database_version must be POSTGRES_15 or later."
  }
}

variable "sql_high_availability" {
  description = "true: a regional (HA) Cloud SQL instance with a standby in another zone."
  type        = bool
  default     = false
}

variable "backup_retained_count" {
  description = "Number of daily Cloud SQL backups kept."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_retained_count >= 7 && var.backup_retained_count <= 365
    error_message = "backup_retained_count must be between 7 and 365."
  }
}

variable "deletion_protection" {
  description = "Protects the Cloud SQL instance (spend ledger, sessions, audit log) from `terraform destroy`. Set false only for the teardown of docs/deploy.md."
  type        = bool
  default     = true
}

variable "python_runtime" {
  description = "Python runtime of the three functions."
  type        = string
  default     = "python312"

  validation {
    condition     = contains(["python311", "python312"], var.python_runtime)
    error_message = "python_runtime must be python311 or python312."
  }
}

variable "source_dir" {
  description = "Directory holding auth.zip, messages.zip and admin.zip built by `python -m gateway package --out DIR`."
  type        = string
  default     = "../dist"
}

variable "functions" {
  description = "Sizing per function. messages holds one thread per stream: concurrency >= 40 on >= 1 vCPU, 3600 s timeout."
  type = map(object({
    cpu             = string
    memory          = string
    concurrency     = number
    max_instances   = number
    min_instances   = number
    timeout_seconds = number
  }))
  default = {
    auth     = { cpu = "1", memory = "512Mi", concurrency = 20, max_instances = 10, min_instances = 0, timeout_seconds = 60 }
    messages = { cpu = "1", memory = "1Gi", concurrency = 80, max_instances = 50, min_instances = 1, timeout_seconds = 3600 }
    admin    = { cpu = "1", memory = "512Mi", concurrency = 20, max_instances = 5, min_instances = 0, timeout_seconds = 300 }
  }

  validation {
    condition     = toset(keys(var.functions)) == toset(["auth", "messages", "admin"])
    error_message = "functions must have exactly the keys auth, messages and admin."
  }

  validation {
    condition     = var.functions["messages"].concurrency >= 40 && tonumber(var.functions["messages"].cpu) >= 1
    error_message = "messages needs concurrency >= 40 on >= 1 vCPU: each streaming response holds a thread for its whole length."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.timeout_seconds >= 1 && f.timeout_seconds <= 3600 && f.concurrency >= 1 && f.concurrency <= 1000])
    error_message = "timeout_seconds must be 1-3600 and concurrency 1-1000."
  }
}

variable "gateway_yaml" {
  description = "Optional: the text of gateway.yaml to store as the first secret version. Empty = add versions out of band (`gcloud secrets versions add`, docs/deploy.md)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "oidc_client_secret" {
  description = "Optional: the OIDC client secret to store. Empty = add the version out of band (keeps it out of Terraform state)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "jwt_signing_key" {
  description = "Optional: the session JWT signing key (32+ characters). Empty = Terraform generates one with random_password."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.jwt_signing_key == "" || length(var.jwt_signing_key) >= 32
    error_message = "jwt_signing_key must be empty (generated) or at least 32 characters."
  }
}

variable "admin_keys" {
  description = "Optional: admin API keys by name (admin-write, admin-read), 32+ characters each. A name left out is generated with random_password."
  type        = map(string)
  default     = {}
  sensitive   = true

  validation {
    condition     = alltrue([for k, v in var.admin_keys : contains(["admin-write", "admin-read"], k) && length(v) >= 32])
    error_message = "admin_keys keys must be admin-write or admin-read and each value at least 32 characters."
  }
}

variable "gateway_paths" {
  description = "Path patterns per function for the URL map. Generated from common/paths.py into paths.auto.tfvars.json by `python -m gateway paths`; do not edit by hand."
  type        = map(list(string))

  validation {
    condition     = toset(keys(var.gateway_paths)) == toset(["auth", "messages", "admin"])
    error_message = "gateway_paths must map auth, messages and admin to path patterns; regenerate with `python -m gateway paths`."
  }
}

variable "default_function" {
  description = "Function that serves paths no rule claims (/, /healthz). Generated with gateway_paths."
  type        = string
  default     = "messages"

  validation {
    condition     = contains(["auth", "messages", "admin"], var.default_function)
    error_message = "default_function must be auth, messages or admin."
  }
}

variable "use_google_groups" {
  description = "true when gateway.yaml sets oidc.google_groups (Google Workspace groups from the Directory API): enables the Admin SDK and Cloud Identity APIs."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = { app = "claude-gateway" }
}
