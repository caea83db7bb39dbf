# Pinned toolchain. The google provider's 7.x line has `google_sql_user.database_roles`
# (the IAM database user gets its Postgres role from the API, no SQL session needed).
terraform {
  required_version = ">= 1.9" # cross-variable validation rules

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.20, < 8.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
  }

  # State lives in a GCS bucket created once by hand (docs/deploy.md, step 1):
  #   terraform init -backend-config="bucket=PROJECT-tfstate"
  backend "gcs" {
    prefix = "claude-gateway"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
