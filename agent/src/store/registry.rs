//! The registry: enrolled stations and sensors, the certificates issued,
//! console users, and the blocks of command numbers and station sequence
//! numbers kept across restarts.

use super::*;

impl Store {
    /// Enrolls a station with `key`, or gives an enrolled one a new key when
    /// `rekey` is set. Returns false when the station exists and `rekey` is not set.
    pub(crate) fn enroll_station(&mut self, id: &str, key: &StationKey, at: Timestamp, rekey: bool) -> Result<bool, StoreError> {
        let sql = if rekey {
            "INSERT INTO stations (id, key, enrolled_at) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET key = excluded.key, enrolled_at = excluded.enrolled_at, revoked_at = NULL"
        } else {
            "INSERT INTO stations (id, key, enrolled_at) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING"
        };
        Ok(self.connection.execute(sql, params![id, key.to_hex(), at.to_string()])? == 1)
    }

    /// Enrolls a sensor bridged by an enrolled station. Returns false when the
    /// station is not enrolled.
    pub(crate) fn enroll_sensor(&mut self, id: &str, station: &str, kind: &str, at: Timestamp) -> Result<bool, StoreError> {
        let known: bool = self.connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM stations WHERE id = ?1 AND revoked_at IS NULL)",
            params![station],
            |row| row.get(0),
        )?;
        if !known {
            return Ok(false);
        }
        self.connection.execute(
            "INSERT INTO sensors (id, station, kind, enrolled_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE SET station = excluded.station, kind = excluded.kind",
            params![id, station, kind, at.to_string()],
        )?;
        Ok(true)
    }

    /// Revokes a station: its key stops working and its certificates are
    /// marked revoked. Returns the revoked certificates' serials (hex), or
    /// None when no such station is enrolled and not revoked yet.
    pub(crate) fn revoke_station(&mut self, id: &str, at: Timestamp) -> Result<Option<Vec<String>>, StoreError> {
        let transaction = self.connection.transaction()?;
        let at = at.to_string();
        if transaction.execute("UPDATE stations SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", params![id, at])? == 0 {
            return Ok(None);
        }
        transaction.execute(
            "UPDATE certificates SET revoked_at = ?2 WHERE subject = ?1 AND usage = 'station' AND revoked_at IS NULL",
            params![id, at],
        )?;
        let serials = {
            let mut statement =
                transaction.prepare("SELECT serial FROM certificates WHERE subject = ?1 AND usage = 'station' ORDER BY serial")?;
            statement.query_map(params![id], |row| row.get(0))?.collect::<Result<Vec<String>, _>>()?
        };
        transaction.commit()?;
        Ok(Some(serials))
    }

    /// Notes a certificate the venue CA issued.
    pub(crate) fn issued(&mut self, certificate: &Issued) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT INTO certificates (serial, subject, usage, issued_at, not_after) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![certificate.serial, certificate.subject, certificate.usage, certificate.issued_at, certificate.not_after],
        )?;
        Ok(())
    }

    /// Every certificate the venue CA issued, oldest first.
    pub(crate) fn certificates(&self) -> Result<Vec<Issued>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT serial, subject, usage, issued_at, not_after, revoked_at FROM certificates ORDER BY issued_at, serial")?;
        let rows = statement.query_map([], |row| {
            Ok(Issued {
                serial: row.get(0)?,
                subject: row.get(1)?,
                usage: row.get(2)?,
                issued_at: row.get(3)?,
                not_after: row.get(4)?,
                revoked_at: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every enrolled station and its key (revoked ones left out).
    /// Reserves the next `count` numbers for the agent's commands, from at
    /// least `floor` (the clock, in microseconds: a new database starts
    /// above any number an earlier one could have used); the first of them.
    pub(crate) fn reserve_command_numbers(&mut self, floor: u64, count: u64) -> Result<u64, StoreError> {
        let transaction = self.connection.transaction()?;
        let end: Option<i64> =
            transaction.query_row("SELECT value FROM counters WHERE name = 'command_seq'", [], |row| row.get(0)).optional()?;
        let first = end.map_or(0, |end| end as u64).max(floor).max(1);
        transaction.execute(
            "INSERT INTO counters (name, value) VALUES ('command_seq', ?1) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![(first + count) as i64],
        )?;
        transaction.commit()?;
        Ok(first)
    }

    /// The newest sequence numbers accepted from each station.
    pub(crate) fn accepted_sequences(&self) -> Result<HashMap<String, Vec<u64>>, StoreError> {
        accepted_sequences(&self.connection)
    }

    pub(crate) fn stations(&self) -> Result<Vec<(String, StationKey)>, StoreError> {
        let mut statement = self.connection.prepare("SELECT id, key FROM stations WHERE revoked_at IS NULL ORDER BY id")?;
        let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
        let mut stations = Vec::new();
        for row in rows {
            let (id, key) = row?;
            match StationKey::from_hex(&key) {
                Ok(key) => stations.push((id, key)),
                Err(error) => return Err(StoreError::Database(format!("station {id}: stored key unreadable: {error}"))),
            }
        }
        Ok(stations)
    }

    /// Every enrolled sensor: id, bridging station, kind.
    pub(crate) fn sensors(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut statement = self.connection.prepare("SELECT id, station, kind FROM sensors ORDER BY id")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds a console user, or replaces an existing one's role and password hash.
    pub(crate) fn put_user(&mut self, name: &str, role: &str, hash: &str) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT INTO users (name, role, hash) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE SET role = excluded.role, hash = excluded.hash",
            params![name, role, hash],
        )?;
        Ok(())
    }

    /// A console user's role and password hash.
    pub(crate) fn user(&self, name: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .connection
            .query_row("SELECT role, hash FROM users WHERE name = ?1", params![name], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }
}
