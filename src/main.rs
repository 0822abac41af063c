fn main() {
    print!("{}", dingbind::api::crd_yaml().unwrap());
}
