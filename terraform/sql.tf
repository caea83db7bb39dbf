# Cloud SQL for PostgreSQL: private IP only, IAM database authentication (no
# passwords), backups with point-in-time recovery, deletion protection.

resource "google_sql_database_instance" "gateway" {
  project             = var.project_id
  name                = var.name_prefix
  region              = var.region
  database_version    = var.sql_database_version
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.sql_tier
    edition                     = "ENTERPRISE"
    availability_type           = var.sql_high_availability ? "REGIONAL" : "ZONAL"
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = var.labels

    ip_configuration {
      ipv4_enabled                                  = false # no public IP
      private_network                               = google_compute_network.gateway.id
      enable_private_path_for_google_cloud_services = true
      ssl_mode                                      = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED" # the connector presents its own ephemeral client certificate
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "03:00"
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = var.backup_retained_count
        retention_unit   = "COUNT"
      }
    }

    # The gateway's SA logs in as an IAM database user.
    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    # Operational logging (checkov's Cloud SQL PostgreSQL checks); statements
    # are not logged: they carry identities.
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    maintenance_window {
      day  = 7 # Sunday
      hour = 4
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

resource "google_sql_database" "gateway" {
  project  = var.project_id
  name     = "gateway"
  instance = google_sql_database_instance.gateway.name
}

# The service account as an IAM database user. It runs the migrations at first
# use, so it needs to create tables: cloudsqlsuperuser is the role Cloud SQL
# gives the users it creates (no superuser attribute).
resource "google_sql_user" "gateway" {
  project        = var.project_id
  name           = local.sql_iam_user
  instance       = google_sql_database_instance.gateway.name
  type           = "CLOUD_IAM_SERVICE_ACCOUNT"
  database_roles = ["cloudsqlsuperuser"]
}
