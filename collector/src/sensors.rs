//! Safety sensors wired to or bridged through this station.
//!
//! Each source runs in its own task and reports what it reads as a
//! [`Sample`]; the station decides what is worth spooling (alarms and state
//! changes, never dropped) and what is only published live. Sources:
//!
//! - zigbee2mqtt: the device's JSON topic on its broker, with zigbee2mqtt's
//!   own field names (`smoke`, `contact`, `battery`, `tamper`, `temperature`,
//!   `carbon_monoxide`, `co`, …);
//! - a file or sysfs attribute holding a number, polled;
//! - a command whose output is a number or a zigbee2mqtt-style JSON object;
//! - a Modbus TCP device (tokio-modbus): one holding or input register, coil
//!   or discrete input, scaled.
//!
//! A sensor that reports nothing for its `silent_after` is reported silent by
//! the station; silence is itself a finding for the regulator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use netbar_protocol::messages::{Reading, SensorKind};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::{ModbusTable, Sensor, Source};

/// One reading from a source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// Index of the sensor in the configuration.
    pub(crate) sensor: usize,
    pub(crate) reading: Reading,
    pub(crate) battery_percent: Option<u8>,
    pub(crate) tamper: bool,
}

/// Turns a number (a file's content, a command's output) into a reading of
/// a sensor of `kind`.
pub(crate) fn from_number(kind: SensorKind, value: f64) -> Reading {
    match kind {
        SensorKind::Smoke => Reading::Alarm { active: value != 0.0 },
        SensorKind::Heat | SensorKind::Temperature => Reading::Celsius { value },
        SensorKind::CarbonMonoxide => Reading::Ppm { value },
        SensorKind::Door => Reading::Door { open: value != 0.0, locked: false },
        SensorKind::PeopleCounter => Reading::Persons { value: value.clamp(0.0, f64::from(u32::MAX)) as u32 },
    }
}

/// Reads a zigbee2mqtt-style JSON object as a reading of a sensor of `kind`;
/// `None` when the object holds nothing this kind reports (z2m also sends
/// link quality, firmware updates, …).
pub(crate) fn from_json(kind: SensorKind, object: &Value) -> Option<(Reading, Option<u8>, bool)> {
    let number = |field: &str| object.get(field).and_then(Value::as_f64);
    let flag = |field: &str| object.get(field).and_then(Value::as_bool);
    let reading = match kind {
        SensorKind::Smoke => Reading::Alarm { active: flag("smoke")? },
        SensorKind::Heat => match number("temperature") {
            Some(value) => Reading::Celsius { value },
            None => Reading::Alarm { active: flag("heat").or_else(|| flag("alarm"))? },
        },
        SensorKind::Temperature => Reading::Celsius { value: number("temperature")? },
        SensorKind::CarbonMonoxide => match number("co") {
            Some(value) => Reading::Ppm { value },
            None => Reading::Alarm { active: flag("carbon_monoxide")? },
        },
        SensorKind::Door => {
            // zigbee2mqtt: contact = true when the door is closed.
            let open = !flag("contact")?;
            let locked = object.get("lock_state").and_then(Value::as_str).is_some_and(|state| state.eq_ignore_ascii_case("locked"))
                || flag("locked").unwrap_or(false);
            Reading::Door { open, locked }
        }
        SensorKind::PeopleCounter => {
            let count = number("people").or_else(|| number("count")).or_else(|| number("people_count"))?;
            Reading::Persons { value: count.clamp(0.0, f64::from(u32::MAX)) as u32 }
        }
    };
    let battery = number("battery").map(|b| b.clamp(0.0, 100.0) as u8);
    let tamper = flag("tamper").unwrap_or(false);
    Some((reading, battery, tamper))
}

/// Parses a command's or a file's output.
fn parse_output(kind: SensorKind, scale: f64, text: &str) -> Result<(Reading, Option<u8>, bool), String> {
    let text = text.trim();
    if text.starts_with('{') {
        let object: Value = serde_json::from_str(text).map_err(|error| format!("output is not JSON: {error}"))?;
        return from_json(kind, &object).ok_or_else(|| format!("output holds no field a {kind:?} sensor reports"));
    }
    let value: f64 = text.parse().map_err(|_| format!("output {:?} is not a number", text.chars().take(40).collect::<String>()))?;
    if !value.is_finite() {
        return Err(format!("output {text:?} is not a finite number"));
    }
    Ok((from_number(kind, value * scale), None, false))
}

/// The sensors read through one zigbee2mqtt broker: index, topic, kind.
type Subscriptions = Vec<(usize, String, SensorKind)>;

/// Starts a task per source; samples arrive on the returned channel.
pub(crate) fn start(sensors: &[Sensor], client_id: &str) -> mpsc::Receiver<Sample> {
    let (samples, receiver) = mpsc::channel(256);
    let mut brokers: BTreeMap<(String, u16), Subscriptions> = BTreeMap::new();
    for (index, sensor) in sensors.iter().enumerate() {
        match &sensor.source {
            Source::Zigbee2mqtt { host, port, topic } => {
                brokers.entry((host.clone(), *port)).or_default().push((index, topic.clone(), sensor.kind));
            }
            Source::File { path, scale, interval } => {
                let (path, scale, kind) = (path.clone(), *scale, sensor.kind);
                let label = path.display().to_string();
                tokio::spawn(poll(index, *interval, samples.clone(), label, move || {
                    let path = path.clone();
                    async move {
                        let text = tokio::fs::read_to_string(&path).await.map_err(|error| format!("cannot read: {error}"))?;
                        parse_output(kind, scale, &text)
                    }
                }));
            }
            Source::Simulated => {}
            Source::Modbus { host, port, unit, table, address, scale, interval } => {
                let device = Arc::new(tokio::sync::Mutex::new(None));
                let (host, port, unit, table, address, scale, kind) = (host.clone(), *port, *unit, *table, *address, *scale, sensor.kind);
                let label = format!("modbus {host}:{port} unit {unit} {table:?} {address}");
                tokio::spawn(poll(index, *interval, samples.clone(), label, move || {
                    let (device, host) = (device.clone(), host.clone());
                    async move {
                        let value = read_modbus(&device, &host, port, unit, table, address).await?;
                        Ok((from_number(kind, f64::from(value) * scale), None, false))
                    }
                }));
            }
            Source::Command { argv, interval } => {
                let (argv, kind) = (argv.clone(), sensor.kind);
                let label = argv.join(" ");
                tokio::spawn(poll(index, *interval, samples.clone(), label, move || {
                    let argv = argv.clone();
                    async move {
                        let output = crate::actions::run(&argv, "", "").await?;
                        parse_output(kind, 1.0, &output)
                    }
                }));
            }
        }
    }
    for (n, ((host, port), topics)) in brokers.into_iter().enumerate() {
        tokio::spawn(zigbee2mqtt(format!("{client_id}-z2m{n}"), host, port, topics, samples.clone()));
    }
    receiver
}

/// One value from a Modbus TCP device, keeping the connection between
/// polls and dropping it after any error so the next poll reconnects.
async fn read_modbus(
    device: &tokio::sync::Mutex<Option<tokio_modbus::client::Context>>,
    host: &str,
    port: u16,
    unit: u8,
    table: ModbusTable,
    address: u16,
) -> Result<u16, String> {
    use tokio_modbus::client::Reader;
    let mut device = device.lock().await;
    if device.is_none() {
        let socket = tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| format!("cannot resolve {host}: {error}"))?
            .next()
            .ok_or_else(|| format!("{host} resolves to no address"))?;
        let connect = tokio_modbus::client::tcp::connect_slave(socket, tokio_modbus::Slave(unit));
        let context = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| format!("connecting to {socket} timed out"))?
            .map_err(|error| format!("cannot connect to {socket}: {error}"))?;
        *device = Some(context);
    }
    let Some(context) = device.as_mut() else { return Err("no connection".into()) };
    let read = async {
        match table {
            ModbusTable::Holding => context.read_holding_registers(address, 1).await.map(|r| r.map(|words| words.first().copied())),
            ModbusTable::Input => context.read_input_registers(address, 1).await.map(|r| r.map(|words| words.first().copied())),
            ModbusTable::Coil => context.read_coils(address, 1).await.map(|r| r.map(|bits| bits.first().map(|&bit| u16::from(bit)))),
            ModbusTable::Discrete => {
                context.read_discrete_inputs(address, 1).await.map(|r| r.map(|bits| bits.first().map(|&bit| u16::from(bit))))
            }
        }
    };
    let result = match tokio::time::timeout(Duration::from_secs(5), read).await {
        Err(_) => Err("the device did not answer within 5 s".to_owned()),
        Ok(Err(error)) => Err(format!("modbus error: {error}")),
        Ok(Ok(Err(exception))) => Err(format!("the device answered with exception {exception}")),
        Ok(Ok(Ok(None))) => Err("the device answered with no value".to_owned()),
        Ok(Ok(Ok(Some(value)))) => Ok(value),
    };
    if result.is_err() {
        *device = None;
    }
    result
}

async fn poll<F, Fut>(sensor: usize, interval: Duration, samples: mpsc::Sender<Sample>, label: String, read: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(Reading, Option<u8>, bool), String>>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        match read().await {
            Ok((reading, battery_percent, tamper)) => {
                failing = false;
                if samples.send(Sample { sensor, reading, battery_percent, tamper }).await.is_err() {
                    return;
                }
            }
            // Logged once per failure streak; the station reports the sensor
            // silent when the streak outlasts its silent_after.
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(source = %label, %error, "sensor source failed");
            }
            Err(_) => {}
        }
    }
}

async fn zigbee2mqtt(client_id: String, host: String, port: u16, topics: Subscriptions, samples: mpsc::Sender<Sample>) {
    let mut options = MqttOptions::new(client_id, host.clone(), port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(256 * 1024, 256 * 1024);
    let (client, mut event_loop) = AsyncClient::new(options, 16);
    let mut backoff = crate::link::Backoff::new(Duration::from_secs(30));
    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                for (_, topic, _) in &topics {
                    let _ = client.try_subscribe(topic.clone(), QoS::AtMostOnce);
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let Ok(object) = serde_json::from_slice::<Value>(&publish.payload) else {
                    tracing::warn!(topic = %publish.topic, "zigbee2mqtt message is not JSON");
                    continue;
                };
                for (sensor, _, kind) in topics.iter().filter(|(_, topic, _)| *topic == publish.topic) {
                    if let Some((reading, battery_percent, tamper)) = from_json(*kind, &object)
                        && samples.send(Sample { sensor: *sensor, reading, battery_percent, tamper }).await.is_err()
                    {
                        return;
                    }
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%host, port, %error, "zigbee2mqtt broker unreachable");
                tokio::time::sleep(backoff.next_wait()).await;
            }
        }
    }
}

/// Whether a change from `before` to `after` must reach the agent for sure:
/// an alarm starting or ending, a door opening, closing or being locked,
/// tamper, and a sensor falling silent or coming back. A standing alarm is
/// not sent again reliably at every reading (it keeps going out live).
pub(crate) fn significant(before: Option<&Sample>, after: &Sample) -> bool {
    let alarming = |sample: &Sample| match sample.reading {
        Reading::Alarm { active } => active,
        Reading::Door { locked, .. } => locked,
        Reading::Silent { .. } => true,
        _ => false,
    } || sample.tamper;
    let state = |sample: &Sample| match sample.reading {
        Reading::Alarm { active } => Some((active, false)),
        Reading::Door { open, locked } => Some((open, locked)),
        _ => None,
    };
    match before {
        None => true,
        Some(before) => {
            alarming(before) != alarming(after)
                || state(before) != state(after)
                || matches!(before.reading, Reading::Silent { .. })
                || before.tamper != after.tamper
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn zigbee2mqtt_fields() {
        let cases = [
            (
                SensorKind::Smoke,
                json!({"smoke": true, "battery": 91, "tamper": false, "linkquality": 120}),
                Some(Reading::Alarm { active: true }),
            ),
            (SensorKind::Door, json!({"contact": false, "battery": 100}), Some(Reading::Door { open: true, locked: false })),
            (SensorKind::Door, json!({"contact": true, "lock_state": "locked"}), Some(Reading::Door { open: false, locked: true })),
            (SensorKind::Temperature, json!({"temperature": 23.5, "humidity": 40}), Some(Reading::Celsius { value: 23.5 })),
            (SensorKind::CarbonMonoxide, json!({"carbon_monoxide": false}), Some(Reading::Alarm { active: false })),
            (SensorKind::CarbonMonoxide, json!({"co": 35.0}), Some(Reading::Ppm { value: 35.0 })),
            (SensorKind::Heat, json!({"heat": true}), Some(Reading::Alarm { active: true })),
            (SensorKind::PeopleCounter, json!({"people": 42}), Some(Reading::Persons { value: 42 })),
            (SensorKind::Smoke, json!({"linkquality": 120}), None),
            (SensorKind::Smoke, json!({"smoke": "yes"}), None),
        ];
        for (kind, object, expected) in cases {
            assert_eq!(from_json(kind, &object).map(|(reading, _, _)| reading), expected, "{kind:?} {object}");
        }
        let (_, battery, tamper) = from_json(SensorKind::Smoke, &json!({"smoke": false, "battery": 150, "tamper": true})).unwrap();
        assert_eq!((battery, tamper), (Some(100), true));
    }

    #[test]
    fn numbers_from_files_and_commands() {
        assert_eq!(parse_output(SensorKind::Temperature, 0.001, "41500\n").unwrap().0, Reading::Celsius { value: 41.5 });
        assert_eq!(parse_output(SensorKind::Smoke, 1.0, "1").unwrap().0, Reading::Alarm { active: true });
        assert_eq!(parse_output(SensorKind::Door, 1.0, "{\"contact\": true}").unwrap().0, Reading::Door { open: false, locked: false });
        assert!(parse_output(SensorKind::Smoke, 1.0, "fire!").unwrap_err().contains("is not a number"));
        assert!(parse_output(SensorKind::Smoke, 1.0, "NaN").is_err());
        assert!(parse_output(SensorKind::Smoke, 1.0, "{\"x\": 1}").unwrap_err().contains("holds no field"));
    }

    #[test]
    fn what_is_significant() {
        let sample = |reading, tamper| Sample { sensor: 0, reading, battery_percent: None, tamper };
        let quiet = sample(Reading::Alarm { active: false }, false);
        let alarm = sample(Reading::Alarm { active: true }, false);
        assert!(significant(None, &quiet), "the first reading");
        assert!(!significant(Some(&quiet), &quiet));
        assert!(significant(Some(&quiet), &alarm));
        assert!(!significant(Some(&alarm), &alarm), "a standing alarm is not spooled again");
        assert!(significant(Some(&alarm), &quiet), "the all-clear");
        assert!(significant(Some(&quiet), &sample(Reading::Alarm { active: false }, true)), "tamper");
        let warm = sample(Reading::Celsius { value: 25.0 }, false);
        assert!(!significant(Some(&warm), &sample(Reading::Celsius { value: 26.0 }, false)));
        let closed = sample(Reading::Door { open: false, locked: false }, false);
        assert!(significant(Some(&closed), &sample(Reading::Door { open: true, locked: false }, false)));
    }
}
