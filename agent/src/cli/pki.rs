//! The venue's certificate authority: `netbar-agent pki`.
//!
//! `pki init` makes the venue CA and the agent's own client certificate in
//! `<data dir>/pki/`; `pki broker` issues the external broker's server
//! certificate; `enroll station --csr` signs a station's request (its key
//! was made on the station by `netbar-collector pki request` and never
//! leaves it); `enroll revoke` puts a station's certificates on the
//! revocation list. Private keys are written readable by their owner only.
//! Every certificate issued is noted in the agent's database, which the
//! revocation list is made from.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType,
    SerialNumber,
};

use crate::config::Loaded;
use crate::store::{Issued, Store};
use netbar_host::private::{create_folder, write_private, write_public};

/// How long a revocation list is valid: as long as a CA. A broker that
/// checks revocation refuses every client once its list has expired, and a
/// venue's list is re-signed whenever a station is revoked and copied to
/// the broker by hand, so a short validity would only ever lock a venue
/// out. `pki crl` signs it again.
const CRL_VALIDITY: Duration = Duration::from_secs(3650 * 86_400);

/// `pki` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Create the venue CA, the agent's client certificate and an empty revocation list.
    Init {
        /// How long the CA is valid, in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue the external broker's server certificate.
    Broker {
        /// A name stations reach the broker by (a host name or an IP address); repeat for more.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Sign this certificate request (PEM) made on the broker's machine,
        /// instead of making the broker's key here.
        #[arg(long, value_name = "FILE")]
        csr: Option<PathBuf>,
        /// Where to write broker.pem (and broker.key), ca.pem and crl.pem.
        #[arg(long)]
        out: PathBuf,
        /// How long the certificate is valid, in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Sign the revocation list again (valid ten years) and copy it to --out.
    Crl {
        /// Where to copy crl.pem besides the CA's folder (the broker's folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Every certificate the venue CA issued, and whether it is revoked.
    List,
}

/// The venue CA's folder.
pub(crate) fn folder(loaded: &Loaded) -> PathBuf {
    loaded.config.data.dir.join("pki")
}

/// The venue CA, loaded to sign.
pub(crate) struct Authority {
    dir: PathBuf,
    certificate: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    Agent,
    Station,
    Broker,
}

impl Usage {
    fn name(self) -> &'static str {
        match self {
            Usage::Agent => "agent",
            Usage::Station => "station",
            Usage::Broker => "broker",
        }
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn offset(time: SystemTime) -> anyhow::Result<time::OffsetDateTime> {
    let seconds = time.duration_since(SystemTime::UNIX_EPOCH).context("the clock is before 1970")?.as_secs();
    Ok(time::OffsetDateTime::from_unix_timestamp(i64::try_from(seconds)?)?)
}

fn days(days: u32) -> Duration {
    Duration::from_secs(u64::from(days) * 86_400)
}

/// A positive serial of 16 random bytes.
fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|at| text.get(at..at + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()).context("a stored serial is not hex"))
        .collect()
}

fn rfc3339(time: time::OffsetDateTime) -> String {
    jiff::Timestamp::from_second(time.unix_timestamp()).map(|at| at.to_string()).unwrap_or_default()
}

impl Authority {
    /// Creates the CA in `dir`; refuses when one is there.
    fn create(dir: &Path, venue: &str, valid_days: u32) -> anyhow::Result<Authority> {
        let key_path = dir.join("ca.key");
        if key_path.exists() {
            anyhow::bail!("{} exists: the venue CA is made already (every certificate it issued would stop working)", key_path.display());
        }
        create_folder(dir)?;
        let key = KeyPair::generate().context("cannot make the CA's key")?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, format!("netbar venue {venue} CA"));
        name.push(DnType::OrganizationName, format!("netbar venue {venue}"));
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(serial());
        let now = SystemTime::now();
        params.not_before = offset(now - Duration::from_secs(3600))?;
        params.not_after = offset(now + days(valid_days))?;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let certificate = params.self_signed(&key).context("cannot sign the CA certificate")?;
        write_private(&key_path, &key.serialize_pem())?;
        write_public(&dir.join("ca.pem"), &certificate.pem())?;
        Authority::load(dir)
    }

    /// Loads the CA from `dir`.
    pub(crate) fn load(dir: &Path) -> anyhow::Result<Authority> {
        let key_path = dir.join("ca.key");
        if !key_path.exists() {
            anyhow::bail!("no venue CA in {}: run `netbar-agent pki init` first", dir.display());
        }
        let key = KeyPair::from_pem(&read(&key_path)?).with_context(|| format!("{}: not a private key", key_path.display()))?;
        let certificate = read(&dir.join("ca.pem"))?;
        let issuer = Issuer::from_ca_cert_pem(&certificate, key)
            .with_context(|| format!("{}: not a CA certificate", dir.join("ca.pem").display()))?;
        Ok(Authority { dir: dir.to_owned(), certificate, issuer })
    }

    /// The CA certificate (PEM).
    pub(crate) fn certificate(&self) -> &str {
        &self.certificate
    }

    /// Issues a certificate for `subject` to the key `public` (from a
    /// request, or a key made here), notes it in `store`, and returns it (PEM).
    fn issue(
        &self,
        store: &mut Store,
        subject: &str,
        usage: Usage,
        names: &[String],
        public: &impl rcgen::PublicKeyData,
        valid_days: u32,
    ) -> anyhow::Result<String> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, subject);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        // ECDSA keys sign; they never encipher.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![if usage == Usage::Broker { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
        for name in names {
            params.subject_alt_names.push(match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into().with_context(|| format!("{name:?} is not a host name"))?),
            });
        }
        let serial = serial();
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        params.not_before = offset(now - Duration::from_secs(3600))?;
        params.not_after = offset(now + days(valid_days))?;
        let certificate = params.signed_by(public, &self.issuer).with_context(|| format!("cannot sign {subject}'s certificate"))?;
        store.issued(&Issued {
            serial: netbar_protocol::auth::hex(&serial.to_bytes()),
            subject: subject.to_owned(),
            usage: usage.name().to_owned(),
            issued_at: rfc3339(offset(now)?),
            not_after: rfc3339(params.not_after),
            revoked_at: None,
        })?;
        Ok(certificate.pem())
    }

    /// Signs a station's request checked by [`station_request`]: the
    /// certificate names the station, whatever else the request asked for.
    pub(crate) fn sign_station(
        &self,
        store: &mut Store,
        station: &str,
        request: &CertificateSigningRequestParams,
    ) -> anyhow::Result<String> {
        self.issue(store, station, Usage::Station, &[], &request.public_key, 1095)
    }

    /// Writes the revocation list from the certificates `store` has marked
    /// revoked, to `crl.pem` here and in `also`.
    pub(crate) fn write_crl(&self, store: &Store, also: Option<&Path>) -> anyhow::Result<usize> {
        let now = SystemTime::now();
        let mut revoked = Vec::new();
        for certificate in store.certificates()? {
            if let Some(at) = &certificate.revoked_at {
                let at: jiff::Timestamp = at.parse().with_context(|| format!("stored revocation time {at:?}"))?;
                revoked.push(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&unhex(&certificate.serial)?),
                    revocation_time: time::OffsetDateTime::from_unix_timestamp(at.as_second())?,
                    reason_code: Some(RevocationReason::CessationOfOperation),
                    invalidity_date: None,
                });
            }
        }
        let count = revoked.len();
        let params = CertificateRevocationListParams {
            this_update: offset(now)?,
            next_update: offset(now + CRL_VALIDITY)?,
            crl_number: SerialNumber::from(now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let pem = params.signed_by(&self.issuer).context("cannot sign the revocation list")?.pem().context("revocation list")?;
        for dir in std::iter::once(self.dir.as_path()).chain(also) {
            let path = dir.join("crl.pem");
            write_public(&path, &pem)?;
        }
        Ok(count)
    }
}

/// A DN value as text.
fn dn_text(value: &rcgen::DnValue) -> String {
    match value {
        rcgen::DnValue::Utf8String(text) => text.clone(),
        rcgen::DnValue::PrintableString(text) => text.as_str().to_owned(),
        other => format!("{other:?}"),
    }
}

/// Reads a station's certificate request and checks that it is the
/// station's own: signed by its key and naming the station.
pub(crate) fn station_request(station: &str, path: &Path) -> anyhow::Result<CertificateSigningRequestParams> {
    let request = signing_request(path)?;
    let asked = request.params.distinguished_name.get(&DnType::CommonName).map(dn_text);
    if asked.as_deref() != Some(station) {
        anyhow::bail!(
            "{}: the certificate request is for {}, not station {station}: make it on the station with `netbar-collector pki request --id {station}`",
            path.display(),
            asked.unwrap_or_else(|| "no name".to_owned())
        );
    }
    Ok(request)
}

/// Reads and checks a certificate request (its signature must hold).
fn signing_request(path: &Path) -> anyhow::Result<CertificateSigningRequestParams> {
    CertificateSigningRequestParams::from_pem(&read(path)?)
        .with_context(|| format!("{}: not a valid certificate request (PEM, signed by its own key)", path.display()))
}

/// Runs a `pki` subcommand.
pub(crate) fn run(loaded: &Loaded, command: Command) -> anyhow::Result<ExitCode> {
    let dir = folder(loaded);
    let mut store = Store::open(&loaded.database(), loaded.policy.retention_days)?;
    match command {
        Command::Init { days } => {
            let authority = Authority::create(&dir, loaded.config.venue.id.as_str(), days)?;
            let key = KeyPair::generate().context("cannot make the agent's key")?;
            let certificate = authority.issue(&mut store, crate::config::AGENT, Usage::Agent, &[], &key, days)?;
            write_private(&dir.join("agent.key"), &key.serialize_pem())?;
            write_public(&dir.join("agent.pem"), &certificate)?;
            authority.write_crl(&store, None)?;
            println!(
                "venue CA made in {dir}: ca.pem (give it to the broker and the stations), ca.key (stays here), \
                 agent.pem and agent.key (the agent's identity at the broker), crl.pem",
                dir = dir.display()
            );
        }
        Command::Broker { names, csr, out, days } => {
            let authority = Authority::load(&dir)?;
            create_folder(&out)?;
            let subject = names.first().cloned().unwrap_or_default();
            let certificate = match &csr {
                Some(request) => {
                    let request = signing_request(request)?;
                    authority.issue(&mut store, &subject, Usage::Broker, &names, &request.public_key, days)?
                }
                None => {
                    let key = KeyPair::generate().context("cannot make the broker's key")?;
                    let certificate = authority.issue(&mut store, &subject, Usage::Broker, &names, &key, days)?;
                    write_private(&out.join("broker.key"), &key.serialize_pem())?;
                    certificate
                }
            };
            write_public(&out.join("broker.pem"), &certificate)?;
            write_public(&out.join("ca.pem"), authority.certificate())?;
            authority.write_crl(&store, Some(&out))?;
            println!(
                "broker certificate for {} in {}: broker.pem{}, ca.pem, crl.pem",
                names.join(", "),
                out.display(),
                if csr.is_some() { "" } else { ", broker.key" }
            );
        }
        Command::Crl { out } => {
            let authority = Authority::load(&dir)?;
            let revoked = authority.write_crl(&store, out.as_deref())?;
            println!("revocation list signed again ({revoked} revoked), valid ten years");
        }
        Command::List => {
            println!("{:<34} {:<8} {:<24} {:<22} state", "serial", "usage", "subject", "valid until");
            for certificate in store.certificates()? {
                let state = certificate.revoked_at.map_or_else(|| "valid".to_owned(), |at| format!("revoked {at}"));
                println!(
                    "{:<34} {:<8} {:<24} {:<22} {state}",
                    certificate.serial, certificate.usage, certificate.subject, certificate.not_after
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
